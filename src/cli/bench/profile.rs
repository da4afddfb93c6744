//! `--profile`: the time of every kernel of an entry, measured from outside the target.
//!
//! The CPU target runs whole entries and has no timing hook, so the program is given one
//! extra entry per step (`train_step#12` runs only step 12 of `train_step`) plus one empty
//! entry per entry (`train_step#none`, which measures the cost of a call that runs nothing).
//! Running the one-step entries in order does the same work as the whole entry, on the same
//! arena. The only change is that a step writing an output slot (`loss`, `logits`) writes an
//! arena twin of it instead (`profile/loss`), since outputs are fresh per call and a later
//! one-step entry must read what an earlier one wrote.
//!
//! Invariant: the program's original entries are untouched (same steps, same slots), so the
//! throughput measured with `--profile` runs the same code as without.

use std::collections::BTreeMap;
use std::time::Instant;

use runtime::program::{Entry, Program, Storage, TensorSlot, ARENA_ALIGN};
use serde::Serialize;

use super::measure::median;
use super::setup::{EntryInfo, Prepared};
use super::BenchError;
use crate::cli::Failure;

/// The name of the one-step entry running step `index` of `entry`.
pub fn step_entry_name(entry: &str, index: usize) -> String {
    format!("{entry}#{index}")
}

/// The name of the empty entry that calibrates the cost of a call.
fn empty_entry_name(entry: &str) -> String {
    format!("{entry}#none")
}

/// `program` with a one-step entry per step of every entry, and an empty entry per entry.
pub fn with_step_entries(program: &Program) -> Program {
    let mut profiled = program.clone();
    let twins = arena_twins_of_outputs(&mut profiled);
    for entry in &program.entries {
        for (index, step) in entry.steps.iter().enumerate() {
            let mut step = step.clone();
            for arg in &mut step.args {
                *arg = twins.get(arg).copied().unwrap_or(*arg);
            }
            profiled.entries.push(Entry {
                name: step_entry_name(&entry.name, index),
                steps: vec![step],
            });
        }
        profiled.entries.push(Entry {
            name: empty_entry_name(&entry.name),
            steps: Vec::new(),
        });
    }
    profiled
}

/// Adds an arena slot after the arena's end for every output slot; returns output -> twin.
fn arena_twins_of_outputs(program: &mut Program) -> BTreeMap<usize, usize> {
    let mut twins = BTreeMap::new();
    let outputs = program.slots_where(|slot| slot.storage == Storage::Output);
    for id in outputs {
        let offset_bytes = program.arena_bytes.next_multiple_of(ARENA_ALIGN);
        let slot = &program.tensors[id];
        let twin = TensorSlot {
            name: format!("profile/{}", slot.name),
            storage: Storage::Arena { offset_bytes },
            ..slot.clone()
        };
        program.arena_bytes =
            (offset_bytes + twin.bytes(program.max_batch)).next_multiple_of(ARENA_ALIGN);
        twins.insert(id, program.tensors.len());
        program.tensors.push(twin);
    }
    twins
}

/// The median time of one step.
#[derive(Clone, Debug, Serialize)]
pub struct KernelTime {
    /// The step's index in its entry.
    pub index: usize,
    /// The kernel function.
    pub kernel: String,
    /// Its kind.
    pub kind: String,
    /// The ops it computes.
    pub ops: String,
    /// Median seconds per call.
    pub seconds: f64,
    /// Its share of the sum of every step's median.
    pub share: f64,
    /// Multiply-accumulates per batch item (0 unless it is a contraction).
    pub macs: u64,
    /// Achieved GFLOP/s (2 FLOP per multiply-accumulate), for contractions.
    pub gflops: Option<f64>,
}

/// Steps with the same label, summed.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// The kind, or the ops.
    pub label: String,
    /// How many steps.
    pub count: usize,
    /// Their summed medians.
    pub seconds: f64,
    /// Share of the step.
    pub share: f64,
    /// Achieved GFLOP/s of the group's contractions, if it has any.
    pub gflops: Option<f64>,
}

/// Where one entry's time goes.
#[derive(Clone, Debug, Serialize)]
pub struct EntryProfile {
    /// The entry.
    pub entry: String,
    /// The sum of every step's median.
    pub step_seconds: f64,
    /// Median seconds of a call that runs no step (included in every step's time).
    pub call_overhead_seconds: f64,
    /// Every step, slowest first.
    pub kernels: Vec<KernelTime>,
    /// By kind (contraction, elementwise, ...), slowest first.
    pub by_kind: Vec<Group>,
    /// By the ops a kernel computes, slowest first.
    pub by_ops: Vec<Group>,
}

/// Profiles every entry of `prepared` over `rounds` rounds (after one untimed round).
///
/// # Errors
///
/// The target fails to run a step.
pub fn profile_all(
    prepared: &mut Prepared,
    batch: usize,
    rounds: usize,
) -> Result<Vec<EntryProfile>, Failure> {
    let infos: Vec<(&'static str, usize)> = prepared
        .entries
        .iter()
        .map(|info| (info.name, info.kernels.len()))
        .collect();
    let mut profiles = Vec::with_capacity(infos.len());
    for (index, (name, steps)) in infos.into_iter().enumerate() {
        super::report::progress(&format!("  profiling {name} ({steps} kernels)"));
        let (samples, overhead) = sample_steps(prepared, name, steps, batch, rounds)?;
        profiles.push(summarise(
            &prepared.entries[index],
            &samples,
            overhead,
            batch,
        ));
    }
    Ok(profiles)
}

/// The per-step samples of `entry` and the median cost of an empty call.
fn sample_steps(
    prepared: &mut Prepared,
    entry: &str,
    steps: usize,
    batch: usize,
    rounds: usize,
) -> Result<(Vec<Vec<f64>>, f64), Failure> {
    let names: Vec<String> = (0..steps)
        .map(|index| step_entry_name(entry, index))
        .collect();
    let empty = empty_entry_name(entry);
    let feeds = prepared.feeds.views();
    let executable = &mut prepared.executable;
    let store = &mut prepared.store;
    let mut timed = |name: &str| {
        let started = Instant::now();
        let result = executable.run(name, batch, &feeds, store);
        let seconds = started.elapsed().as_secs_f64();
        result.map(|_| seconds).map_err(|source| {
            BenchError::Target {
                stage: "profiling a step",
                source,
            }
            .failure()
        })
    };
    let mut samples = vec![Vec::with_capacity(rounds); steps];
    let mut empty_samples = Vec::with_capacity(rounds);
    for round in 0..=rounds {
        for (index, name) in names.iter().enumerate() {
            let seconds = timed(name)?;
            if round > 0 {
                samples[index].push(seconds);
            }
        }
        empty_samples.push(timed(&empty)?);
    }
    Ok((samples, median(&empty_samples)))
}

/// The profile of an entry from its samples.
fn summarise(info: &EntryInfo, samples: &[Vec<f64>], overhead: f64, batch: usize) -> EntryProfile {
    let medians: Vec<f64> = samples.iter().map(|values| median(values)).collect();
    let total: f64 = medians.iter().sum();
    let share = |seconds: f64| if total > 0.0 { seconds / total } else { 0.0 };
    let mut kernels: Vec<KernelTime> = info
        .kernels
        .iter()
        .zip(&medians)
        .enumerate()
        .map(|(index, (kernel, &seconds))| KernelTime {
            index,
            kernel: kernel.kernel.clone(),
            kind: kernel.kind.clone(),
            ops: kernel.ops.clone(),
            seconds,
            share: share(seconds),
            macs: kernel.macs,
            gflops: gflops(kernel.macs, batch, seconds),
        })
        .collect();
    kernels.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let by_kind = groups(&kernels, |kernel| &kernel.kind, total, batch);
    let by_ops = groups(&kernels, |kernel| &kernel.ops, total, batch);
    EntryProfile {
        entry: info.name.to_string(),
        step_seconds: total,
        call_overhead_seconds: overhead,
        kernels,
        by_kind,
        by_ops,
    }
}

/// GFLOP/s of `macs` multiply-accumulates per item over `batch` items in `seconds`.
fn gflops(macs: u64, batch: usize, seconds: f64) -> Option<f64> {
    (macs > 0 && seconds > 0.0).then(|| 2.0 * macs as f64 * batch as f64 / seconds / 1e9)
}

/// Sums `kernels` by `label`, slowest group first.
fn groups(
    kernels: &[KernelTime],
    label: impl Fn(&KernelTime) -> &String,
    total: f64,
    batch: usize,
) -> Vec<Group> {
    let mut sums: BTreeMap<&String, (usize, f64, u64)> = BTreeMap::new();
    for kernel in kernels {
        let entry = sums.entry(label(kernel)).or_default();
        entry.0 += 1;
        entry.1 += kernel.seconds;
        entry.2 += kernel.macs;
    }
    let mut groups: Vec<Group> = sums
        .into_iter()
        .map(|(label, (count, seconds, macs))| Group {
            label: label.clone(),
            count,
            seconds,
            share: if total > 0.0 { seconds / total } else { 0.0 },
            gflops: gflops(macs, batch, seconds),
        })
        .collect();
    groups.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::program::{DType, Step};

    fn slot(name: &str, storage: Storage) -> TensorSlot {
        TensorSlot {
            name: name.into(),
            dtype: DType::F32,
            batched: true,
            dims: vec![10],
            storage,
        }
    }

    #[test]
    fn step_entries_read_and_write_arena_twins_of_outputs() {
        let program = Program {
            mlir: String::new(),
            tensors: vec![
                slot("image", Storage::Feed),
                slot("hidden", Storage::Arena { offset_bytes: 0 }),
                slot("logits", Storage::Output),
            ],
            entries: vec![Entry {
                name: "step".into(),
                steps: vec![
                    Step {
                        kernel: "a".into(),
                        args: vec![0, 1],
                        batch_split: true,
                    },
                    Step {
                        kernel: "b".into(),
                        args: vec![1, 2],
                        batch_split: false,
                    },
                ],
            }],
            max_batch: 4,
            arena_bytes: 192,
        };
        let profiled = with_step_entries(&program);
        assert_eq!(profiled.validate(), Ok(()));
        assert_eq!(profiled.entries[0], program.entries[0]);
        let names: Vec<&str> = profiled.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["step", "step#0", "step#1", "step#none"]);
        assert_eq!(profiled.entries[1].steps[0].args, [0, 1]);
        assert_eq!(profiled.entries[2].steps[0].args, [1, 3]);
        assert_eq!(profiled.tensors[3].name, "profile/logits");
        assert_eq!(
            profiled.tensors[3].storage,
            Storage::Arena { offset_bytes: 192 }
        );
        assert_eq!(profiled.arena_bytes, 192 + 192);
        assert!(profiled.entries[3].steps.is_empty());
    }

    #[test]
    fn groups_sum_by_label_slowest_first() {
        let kernel = |ops: &str, seconds: f64| KernelTime {
            index: 0,
            kernel: "k".into(),
            kind: "elementwise".into(),
            ops: ops.into(),
            seconds,
            share: 0.0,
            macs: 0,
            gflops: None,
        };
        let kernels = [
            kernel("relu", 1.0),
            kernel("conv2d", 2.5),
            kernel("relu", 2.0),
        ];
        let by_ops = groups(&kernels, |kernel| &kernel.ops, 5.5, 1);
        assert_eq!(by_ops[0].label, "relu");
        assert_eq!((by_ops[0].count, by_ops[0].seconds), (2, 3.0));
        assert!((by_ops[1].share - 2.5 / 5.5).abs() < 1e-12);
    }
}
