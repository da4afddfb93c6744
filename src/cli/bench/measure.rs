//! Timing loops and memory figures: warm-up steps, then repeats of timed steps, each repeat
//! summarised by its median step and the whole by the median of the repeats (as
//! `../shared/bench/bench_torch.py` does); peak resident memory from `/proc/self/status`.
//!
//! Invariant: a timed region holds one `CpuExecutable::run` call of a whole entry and nothing
//! else; reading the loss happens after the clock stops.

use std::time::Instant;

use compiler::autodiff::LOSS;
use runtime::program::HostTensor;

use super::setup::Prepared;
use super::BenchError;
use crate::cli::Failure;

/// How many steps to run.
#[derive(Clone, Copy, Debug)]
pub struct Repetition {
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps per repeat.
    pub steps: usize,
    /// Repeats.
    pub repeats: usize,
}

/// The timing of one entry.
#[derive(Clone, Debug)]
pub struct Timing {
    /// The median step of each repeat, in seconds.
    pub repeat_seconds: Vec<f64>,
    /// The median of `repeat_seconds`.
    pub median_seconds: f64,
    /// The fastest step of all.
    pub min_seconds: f64,
    /// The loss after the first and after the last step, when the entry returns one.
    pub loss: Option<(f32, f32)>,
}

impl Timing {
    /// Images per second at the median step.
    pub fn images_per_second(&self, batch: usize) -> f64 {
        batch as f64 / self.median_seconds
    }
}

/// Runs `entry` `repetition.warmup` times untimed, then `repetition.repeats` times
/// `repetition.steps` timed steps, all on the same feeds.
///
/// # Errors
///
/// The target fails to run the entry.
pub fn time_entry(
    prepared: &mut Prepared,
    entry: &'static str,
    batch: usize,
    repetition: &Repetition,
) -> Result<Timing, Failure> {
    let feeds = prepared.feeds.views();
    let executable = &mut prepared.executable;
    let store = &mut prepared.store;
    let mut run = || {
        executable
            .run(entry, batch, &feeds, store)
            .map_err(|source| {
                BenchError::Target {
                    stage: "running a step",
                    source,
                }
                .failure()
            })
    };
    let mut losses = Vec::new();
    for _ in 0..repetition.warmup {
        losses.extend(loss_of(&run()?));
    }

    let mut repeat_seconds = Vec::with_capacity(repetition.repeats);
    let mut min_seconds = f64::INFINITY;
    for _ in 0..repetition.repeats {
        let mut seconds = Vec::with_capacity(repetition.steps);
        for _ in 0..repetition.steps {
            let started = Instant::now();
            let outputs = run()?;
            seconds.push(started.elapsed().as_secs_f64());
            losses.extend(loss_of(&outputs));
        }
        min_seconds = seconds.iter().copied().fold(min_seconds, f64::min);
        repeat_seconds.push(median(&seconds));
    }
    let loss = losses
        .first()
        .zip(losses.last())
        .map(|(&first, &last)| (first, last));
    if loss.is_some_and(|(_, last)| !last.is_finite()) {
        tracing::warn!(
            entry,
            "the loss is not finite: the timing may not be representative"
        );
    }
    Ok(Timing {
        median_seconds: median(&repeat_seconds),
        repeat_seconds,
        min_seconds,
        loss,
    })
}

/// The scalar `loss` among a step's outputs, if any.
fn loss_of(outputs: &std::collections::BTreeMap<String, HostTensor>) -> Option<f32> {
    outputs.get(LOSS)?.as_f32()?.first().copied()
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// The process's peak resident memory (`VmHWM`) in bytes, when `/proc` tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kibibytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kibibytes * 1024)
}

/// Resets the peak resident memory to the current one (Linux's `clear_refs` value 5), so
/// that each configuration reports its own peak; false when the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn peak_rss_is_at_least_the_memory_just_touched() {
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        let peak = peak_rss_bytes().expect("Linux reports VmHWM");
        assert!(peak >= 64 << 20, "peak {peak}");
        drop(block);
    }
}
