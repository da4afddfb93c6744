//! Code generation glue: schedules a training graph and an evaluation graph, emits their
//! kernels into one MLIR module, and assembles the plain-data [`Program`] the runtime runs,
//! with the entries `train_step` and `eval_step`.
//!
//! Invariant: the two entries share every persistent tensor, feed and output slot by name (the
//! trainer fills parameters once and both entries see them); arena temporaries belong to one
//! entry each (named `<entry>/<value>`) and both entries use the same arena, sized for the
//! larger plan, since entries never run at the same time.

use std::collections::BTreeMap;

use grammar::SourceFile;
use runtime::program::{Entry, Program, Step, Storage, TensorSlot};

use crate::ir::{Graph, TensorType};
use crate::mlir::{KernelInput, MlirError, ModuleBuilder};
use crate::schedule::buffers::program_dtype;
use crate::schedule::{schedule, Access, GraphMode, Schedule, ScheduleError};

/// Name of the training entry.
pub const TRAIN_STEP: &str = "train_step";
/// Name of the evaluation entry.
pub const EVAL_STEP: &str = "eval_step";

/// Why a program could not be generated.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum CodegenError {
    /// Scheduling failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Schedule(#[from] ScheduleError),
    /// A kernel could not be emitted.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Mlir(#[from] MlirError),
    /// Two entries use one name for tensors of different types or kinds.
    #[error("internal error: `{name}` is {first} in one entry and {second} in another")]
    SlotConflict {
        /// The shared name.
        name: String,
        /// Its type and storage in the first entry.
        first: String,
        /// Its type and storage in the second.
        second: String,
    },
}

/// One graph to compile into an entry.
pub struct EntryGraph<'a> {
    /// Entry name (`train_step`, `eval_step`).
    pub name: &'a str,
    /// The graph.
    pub graph: &'a Graph,
    /// How its mode-dependent ops behave.
    pub mode: GraphMode,
}

/// A generated program with the schedules it was made from (for printing and tests).
pub struct Compiled {
    /// The program.
    pub program: Program,
    /// The schedule of each entry, in entry order.
    pub schedules: Vec<Schedule>,
    /// Distinct kernel functions in the module.
    pub functions: usize,
}

/// Compiles the training and evaluation graphs into one program (`train_step`, `eval_step`).
///
/// # Errors
///
/// [`CodegenError`] when a graph cannot be scheduled or a kernel emitted.
pub fn compile_program(
    training: &Graph,
    evaluation: &Graph,
    source: &SourceFile,
    max_batch: usize,
) -> Result<Program, CodegenError> {
    let entries = [
        EntryGraph { name: TRAIN_STEP, graph: training, mode: GraphMode::Train },
        EntryGraph { name: EVAL_STEP, graph: evaluation, mode: GraphMode::Eval },
    ];
    Ok(compile_entries(&entries, Some(source), max_batch)?.program)
}

/// Compiles any set of graphs into one program, one entry each.
///
/// # Errors
///
/// [`CodegenError`] when a graph cannot be scheduled or a kernel emitted.
pub fn compile_entries(
    entries: &[EntryGraph<'_>],
    source: Option<&SourceFile>,
    max_batch: usize,
) -> Result<Compiled, CodegenError> {
    let _span = tracing::info_span!("codegen").entered();
    let mut module = ModuleBuilder::new();
    let mut table = SlotTable::default();
    let mut program_entries = Vec::with_capacity(entries.len());
    let mut schedules = Vec::with_capacity(entries.len());
    let mut arena_bytes = 0;
    for entry in entries {
        let schedule = schedule(entry.graph, max_batch, entry.mode)?;
        let slot_ids = table.add_plan(entry.name, &schedule)?;
        let mut steps = Vec::with_capacity(schedule.kernels.len());
        for kernel in &schedule.kernels {
            let slots: Vec<usize> =
                kernel.args.iter().map(|arg| schedule.plan.slot_of[&arg.value]).collect();
            let same_slot_as = slots
                .iter()
                .enumerate()
                .map(|(index, slot)| {
                    let is_write = kernel.args[index].access == Access::Write;
                    let earlier = slots[..index].iter().position(|other| other == slot);
                    earlier.filter(|&other| is_write && kernel.args[other].access == Access::Read)
                })
                .collect();
            let input = KernelInput {
                graph: entry.graph,
                kernel,
                slot_types: slots.iter().map(|&slot| schedule.plan.slots[slot].ty.clone()).collect(),
                same_slot_as,
                mode: entry.mode,
            };
            let name = module.add_kernel(&input, source)?;
            let args = slots.iter().map(|&slot| slot_ids[slot]).collect();
            steps.push(Step { kernel: name, args, batch_split: kernel.batch_split });
        }
        arena_bytes = arena_bytes.max(schedule.plan.arena_bytes);
        program_entries.push(Entry { name: entry.name.to_string(), steps });
        schedules.push(schedule);
    }
    let functions = module.function_count();
    let program = Program {
        mlir: module.finish(),
        tensors: table.slots,
        entries: program_entries,
        max_batch,
        arena_bytes,
    };
    tracing::info!(functions, tensors = program.tensors.len(), arena_bytes, "program generated");
    Ok(Compiled { program, schedules, functions })
}

/// The program's slot table under construction, with shared names resolved.
#[derive(Default)]
struct SlotTable {
    slots: Vec<TensorSlot>,
    by_name: BTreeMap<String, usize>,
}

impl SlotTable {
    /// Adds the slots of one entry's plan; returns the program slot of each plan slot.
    fn add_plan(&mut self, entry: &str, schedule: &Schedule) -> Result<Vec<usize>, CodegenError> {
        let mut ids = Vec::with_capacity(schedule.plan.slots.len());
        for slot in &schedule.plan.slots {
            let shared = !matches!(slot.storage, Storage::Arena { .. });
            let name = if shared { slot.name.clone() } else { format!("{entry}/{}", slot.name) };
            let program_slot = program_slot(name.clone(), &slot.ty, slot.storage);
            if let Some(&existing) = self.by_name.get(&name) {
                let previous = &self.slots[existing];
                if *previous != program_slot {
                    return Err(CodegenError::SlotConflict {
                        name,
                        first: format!("{:?} {:?}", previous.storage, previous.dims),
                        second: format!("{:?} {:?}", program_slot.storage, program_slot.dims),
                    });
                }
                ids.push(existing);
                continue;
            }
            self.by_name.insert(name, self.slots.len());
            ids.push(self.slots.len());
            self.slots.push(program_slot);
        }
        Ok(ids)
    }
}

fn program_slot(name: String, ty: &TensorType, storage: Storage) -> TensorSlot {
    TensorSlot {
        name,
        dtype: program_dtype(ty.dtype),
        batched: ty.batched,
        dims: ty.dims.clone(),
        storage,
    }
}
