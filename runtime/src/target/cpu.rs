//! The CPU target: a program's MLIR module is parsed, verified, lowered to LLVM
//! ([`pipeline`]) and compiled in process by the [`jit`] (LLVM `-O3` for the host CPU, one
//! thread per core); contractions run in the Rust micro-kernels of [`ukernels`], visible to
//! the JIT code as symbols. [`CpuExecutable::run`] binds the tensor slots to memory (the
//! caller's parameters and feeds, the program's arena, fresh outputs) and calls the steps of
//! an entry in order, batch-split steps in parts on the micro-kernels' thread pool.
//!
//! Invariant: after `compile` succeeds, every step of every entry has a resolved kernel, and
//! `run` either runs all steps of the entry or returns an error (a micro-kernel failure stops
//! the entry at the failing step, leaving persistent tensors partly updated).

mod call;
pub mod jit;
pub mod pipeline;
pub mod ukernels;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rayon::prelude::*;

use crate::program::{
    DType, Entry, HostTensor, ParamStore, Program, Storage, TensorRef, TensorSlot, ARENA_ALIGN,
};
use crate::target::TargetError;
use call::Frame;
use jit::{CompiledKernel, Jit};
use pipeline::MlirSession;

/// A batch-split step is cut into parts only when its batched arguments hold at least this
/// many elements in all; below it, a thread hand-off costs more than it saves.
const SPLIT_MIN_ELEMENTS: usize = 1 << 18;

/// A program compiled for this CPU, with its arena.
pub struct CpuExecutable {
    #[expect(
        dead_code,
        reason = "owns the JIT code that the kernel addresses point into"
    )]
    jit: Jit,
    program: Program,
    entries: Vec<EntryPlan>,
    arena: Vec<ArenaBlock>,
    compile_seconds: f64,
}

/// An entry with its kernels resolved and the slots it touches.
struct EntryPlan {
    steps: Vec<CompiledKernel>,
    slots: Vec<usize>,
}

/// One [`ARENA_ALIGN`]-aligned block of the arena.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct ArenaBlock([u8; ARENA_ALIGN]);

/// Parses and verifies MLIR text, for `coopc compile --emit mlir` and tests.
///
/// # Errors
///
/// [`TargetError::Parse`] or [`TargetError::Verify`], with MLIR's diagnostics.
pub fn verify_mlir(text: &str) -> Result<(), TargetError> {
    MlirSession::new().parse(text).map(|_| ())
}

impl CpuExecutable {
    /// Compiles `program`: validate its tables, parse and verify the module, lower it to LLVM,
    /// JIT-compile it at `-O3` for the host CPU, register the micro-kernels and resolve the
    /// kernel of every step.
    ///
    /// # Errors
    ///
    /// Any [`TargetError`] of compilation: invalid tables, parse, verify or lowering failures
    /// with MLIR's diagnostics, JIT failure, or a step whose kernel the module lacks.
    pub fn compile(program: &Program) -> Result<Self, TargetError> {
        let started = Instant::now();
        program.validate()?;
        let kernels = kernel_names(program);
        let (jit, compiled) = {
            let session = MlirSession::new();
            let mut module = session.parse(&program.mlir)?;
            check_signatures(program, &pipeline::kernel_signatures(&module))?;
            let parsed = started.elapsed().as_secs_f64();
            session.lower(&mut module)?;
            let lowered = started.elapsed().as_secs_f64();
            let threads = ukernels::pool().current_num_threads();
            let symbols = ukernels::symbols();
            let compiled =
                Jit::compile(&module, &kernels, &symbols, threads).map_err(|message| {
                    TargetError::Jit {
                        message,
                        diagnostics: session.take_diagnostics(),
                    }
                })?;
            tracing::debug!(parsed, lowered, threads, "mlir parsed and lowered");
            compiled
        };
        let entries = program
            .entries
            .iter()
            .map(|entry| plan_entry(&compiled, entry))
            .collect::<Result<Vec<_>, _>>()?;
        let blocks = program.arena_bytes.div_ceil(ARENA_ALIGN);
        let compile_seconds = started.elapsed().as_secs_f64();
        let kernels = kernels.len();
        tracing::info!(kernels, seconds = compile_seconds, "compiled for the CPU");
        Ok(CpuExecutable {
            jit,
            program: program.clone(),
            entries,
            arena: vec![ArenaBlock([0; ARENA_ALIGN]); blocks],
            compile_seconds,
        })
    }

    /// The program this executable runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Seconds `compile` took, from text to resolved kernels.
    pub fn compile_seconds(&self) -> f64 {
        self.compile_seconds
    }

    /// Runs entry `entry` on a batch of `batch` items: binds every slot the entry uses (feeds
    /// by name from `feeds`, persistent tensors by name from `persistent`, which kernels
    /// update in place), calls the steps in order and returns the entry's outputs by name.
    ///
    /// # Errors
    ///
    /// [`TargetError::UnknownEntry`], [`TargetError::BadBatch`], a missing or mismatched
    /// tensor, or a micro-kernel failure during a step.
    pub fn run(
        &mut self,
        entry: &str,
        batch: usize,
        feeds: &[(&str, TensorRef<'_>)],
        persistent: &mut ParamStore,
    ) -> Result<BTreeMap<String, HostTensor>, TargetError> {
        let index = self.entry_index(entry)?;
        if batch == 0 || batch > self.program.max_batch {
            return Err(TargetError::BadBatch {
                batch,
                max_batch: self.program.max_batch,
            });
        }
        let mut outputs = Vec::new();
        let bases = self.bind(index, batch, feeds, persistent, &mut outputs)?;
        for step_index in 0..self.entries[index].steps.len() {
            self.call_step(index, step_index, batch, &bases)?;
        }
        let tensors = &self.program.tensors;
        Ok(outputs
            .into_iter()
            .map(|(id, tensor)| (tensors[id].name.clone(), tensor))
            .collect())
    }

    fn entry_index(&self, entry: &str) -> Result<usize, TargetError> {
        let found = self
            .program
            .entries
            .iter()
            .position(|candidate| candidate.name == entry);
        found.ok_or_else(|| TargetError::UnknownEntry {
            entry: entry.to_owned(),
            available: self
                .program
                .entries
                .iter()
                .map(|entry| entry.name.clone())
                .collect(),
        })
    }

    /// The address of every slot entry `index` uses (null for the others); allocates the
    /// outputs into `outputs`.
    fn bind(
        &mut self,
        index: usize,
        batch: usize,
        feeds: &[(&str, TensorRef<'_>)],
        persistent: &mut ParamStore,
        outputs: &mut Vec<(usize, HostTensor)>,
    ) -> Result<Vec<*mut u8>, TargetError> {
        let arena = self.arena.as_mut_ptr().cast::<u8>();
        let mut bases = vec![std::ptr::null_mut(); self.program.tensors.len()];
        for &id in &self.entries[index].slots {
            let slot = &self.program.tensors[id];
            bases[id] = match slot.storage {
                Storage::Arena { offset_bytes } => arena.wrapping_add(offset_bytes),
                Storage::Feed => {
                    let feed = feeds.iter().find(|(name, _)| *name == slot.name);
                    let (_, view) = feed.ok_or_else(|| missing(&slot.name))?;
                    if view.dtype() != slot.dtype || view.len() != slot.elements(batch) {
                        return Err(mismatch(slot, batch, view.dtype(), view.len()));
                    }
                    view.data_ptr().cast_mut()
                }
                Storage::Persistent => {
                    let tensor = persistent
                        .get_mut(&slot.name)
                        .ok_or_else(|| missing(&slot.name))?;
                    if tensor.dtype() != slot.dtype || tensor.shape != slot.shape(1) {
                        return Err(mismatch(slot, batch, tensor.dtype(), tensor.len()));
                    }
                    tensor.data_ptr()
                }
                Storage::Output => {
                    let mut tensor = HostTensor::zeros(slot.dtype, slot.shape(batch));
                    let base = tensor.data_ptr();
                    outputs.push((id, tensor));
                    base
                }
            };
        }
        Ok(bases)
    }

    /// Calls step `step_index` of entry `index`, in parts over the batch when it is marked
    /// batch-split and large enough.
    fn call_step(
        &self,
        index: usize,
        step_index: usize,
        batch: usize,
        bases: &[*mut u8],
    ) -> Result<(), TargetError> {
        let step = &self.program.entries[index].steps[step_index];
        let kernel = self.entries[index].steps[step_index];
        let _span = tracing::trace_span!("kernel", name = %step.kernel).entered();
        let tensors = &self.program.tensors;
        let parts = split_parts(self, step.batch_split, &step.args, batch);
        let mut frames: Vec<Frame> = (0..parts)
            .map(|part| {
                let (first, end) = (part * batch / parts, (part + 1) * batch / parts);
                Frame::new(kernel, tensors, &step.args, bases, first, end - first)
            })
            .collect();
        // SAFETY: `bind` gave every argument slot a live buffer of its size for this batch
        // (arena sized for max_batch >= batch; feeds, parameters and outputs checked); the
        // kernel was compiled from the module whose signature follows these slots.
        if parts == 1 {
            unsafe { frames[0].call() };
        } else {
            ukernels::pool().install(|| {
                frames
                    .par_iter_mut()
                    .for_each(|frame| unsafe { frame.call() });
            });
        }
        match ukernels::take_failure() {
            None => Ok(()),
            Some(source) => Err(TargetError::Ukernel {
                entry: self.program.entries[index].name.clone(),
                step: step_index,
                kernel: step.kernel.clone(),
                source,
            }),
        }
    }
}

/// Number of batch parts a step runs in: 1 unless it is batch-split and large enough.
fn split_parts(
    executable: &CpuExecutable,
    batch_split: bool,
    args: &[usize],
    batch: usize,
) -> usize {
    if !batch_split {
        return 1;
    }
    let tensors = &executable.program.tensors;
    let elements: usize = args
        .iter()
        .filter(|&&id| tensors[id].batched)
        .map(|&id| tensors[id].elements(batch))
        .sum();
    if elements < SPLIT_MIN_ELEMENTS {
        return 1;
    }
    ukernels::pool().current_num_threads().min(batch).max(1)
}

/// The kernels the entries call, each once, in order of first use.
fn kernel_names(program: &Program) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let steps = program.entries.iter().flat_map(|entry| &entry.steps);
    steps
        .filter(|step| seen.insert(step.kernel.as_str()))
        .map(|step| step.kernel.clone())
        .collect()
}

/// Checks that every step's kernel exists and takes exactly the memrefs its slots describe
/// (`(memref<?x16x32x32xf32>, memref<f32>) -> ()`): a mismatch would corrupt memory.
fn check_signatures(
    program: &Program,
    signatures: &HashMap<String, String>,
) -> Result<(), TargetError> {
    for entry in &program.entries {
        for step in &entry.steps {
            let Some(found) = signatures.get(&step.kernel) else {
                return Err(TargetError::MissingKernel {
                    entry: entry.name.clone(),
                    kernel: step.kernel.clone(),
                });
            };
            let types: Vec<String> = step
                .args
                .iter()
                .map(|&id| program.tensors[id].memref_type())
                .collect();
            let expected = format!("({}) -> ()", types.join(", "));
            if *found != expected || step.args.len() > jit::MAX_ARITY {
                return Err(TargetError::KernelSignature {
                    kernel: step.kernel.clone(),
                    expected,
                    found: found.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Resolves the kernels of an entry and lists the slots its steps use.
fn plan_entry(
    compiled: &HashMap<String, CompiledKernel>,
    entry: &Entry,
) -> Result<EntryPlan, TargetError> {
    let mut slots: Vec<usize> = entry
        .steps
        .iter()
        .flat_map(|step| step.args.iter().copied())
        .collect();
    slots.sort_unstable();
    slots.dedup();
    let steps = entry
        .steps
        .iter()
        .map(|step| {
            compiled
                .get(&step.kernel)
                .copied()
                .ok_or_else(|| TargetError::MissingKernel {
                    entry: entry.name.clone(),
                    kernel: step.kernel.clone(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EntryPlan { steps, slots })
}

fn missing(name: &str) -> TargetError {
    TargetError::MissingTensor {
        name: name.to_owned(),
    }
}

fn mismatch(slot: &TensorSlot, batch: usize, found_dtype: DType, found: usize) -> TargetError {
    TargetError::TensorMismatch {
        name: slot.name.clone(),
        expected_dtype: slot.dtype,
        expected: slot.shape(batch),
        found_dtype,
        found,
    }
}
