//! Setting up one benchmark configuration, every stage timed: the front end (once per model),
//! the training and inference graphs of the phase's forward graph, one program holding the
//! entries the mode needs, its JIT compilation, seeded initial parameters and random feeds.
//!
//! Invariant: the program's entries are compiled exactly as `coopc train` compiles them
//! (`compile_entries` with the default SGD options); only `--profile` changes the program,
//! by adding entries (see [`super::profile::with_step_entries`]), never the full ones.

use std::time::Instant;

use compiler::autodiff::{self, SgdOptions, LABELS, LEARNING_RATE, LOGITS};
use compiler::codegen::{compile_entries, EntryGraph, TRAIN_STEP};
use compiler::ir::Graph;
use compiler::pipeline::Compiled;
use compiler::reference::init::init_params;
use compiler::schedule::buffers::DROPOUT_SEED;
use compiler::schedule::{GraphMode, Schedule};
use grammar::SourceFile;
use runtime::program::{DType, HostTensor, ParamStore, Program, Storage, TensorRef};
use runtime::rng::Rng;
use runtime::target::cpu::CpuExecutable;

use super::{flops, profile, BenchError, Mode};
use crate::cli::compile::ModelArgs;
use crate::cli::Failure;

/// Name of the inference entry (forward only, BatchNorm on running statistics).
pub const INFER_STEP: &str = "infer_step";

/// The front end's result for the model, shared by every configuration.
pub struct Front {
    source: SourceFile,
    compiled: Compiled,
    seconds: f64,
}

impl Front {
    /// Reads the model and runs parse, build, `coop` and `lower`, timing them together.
    ///
    /// # Errors
    ///
    /// The file cannot be read or the front end reports errors.
    pub fn compile(args: &ModelArgs) -> Result<Front, Failure> {
        let source = args.source()?;
        let started = Instant::now();
        let compiled = args.compile(&source, &mut |_, _| {})?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Front {
            source,
            compiled,
            seconds,
        })
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.compiled.model
    }

    /// The forward graph of `phase`: after `coop` (1) or after `lower` (2).
    fn forward(&self, phase: u8) -> &Graph {
        if phase == 1 {
            &self.compiled.coop
        } else {
            &self.compiled.lowered
        }
    }
}

/// What one configuration compiles and feeds.
pub struct Configuration {
    /// 1 or 2.
    pub phase: u8,
    /// Batch size (also the program's largest batch).
    pub batch: usize,
    /// Which entries to compile.
    pub mode: Mode,
    /// Seed of the parameters and the data.
    pub seed: u64,
    /// Learning rate fed to the training step.
    pub lr: f32,
    /// Add the per-kernel entries of `--profile`.
    pub profile: bool,
}

/// Seconds spent in each compile stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompileTimes {
    /// Parse, build, `coop` and `lower`.
    pub front: f64,
    /// Training and inference graphs (autodiff, BatchNorm expansion).
    pub autodiff: f64,
    /// Scheduling, buffer planning and MLIR emission.
    pub codegen: f64,
    /// MLIR parsing, lowering to LLVM and JIT compilation.
    pub jit: f64,
}

impl CompileTimes {
    /// The whole compile time.
    pub fn total(&self) -> f64 {
        self.front + self.autodiff + self.codegen + self.jit
    }
}

/// What the profiler needs to know of one step of an entry.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    /// The kernel function's name.
    pub kernel: String,
    /// Its kind (`contraction`, `elementwise`, ...).
    pub kind: String,
    /// The ops it computes, joined by `+` (`copy` for an output copy).
    pub ops: String,
    /// Multiply-accumulates per batch item (0 unless it is a contraction).
    pub macs: u64,
}

/// A compiled entry and its steps, in program order.
pub struct EntryInfo {
    /// The entry's name.
    pub name: &'static str,
    /// One per step.
    pub kernels: Vec<KernelInfo>,
}

/// A configuration ready to run.
pub struct Prepared {
    /// The compiled program.
    pub executable: CpuExecutable,
    /// Parameters, statistics and momentum buffers, updated by the training step.
    pub store: ParamStore,
    /// The random feeds, the same at every step.
    pub feeds: Feeds,
    /// Compile time per stage.
    pub times: CompileTimes,
    /// The measured entries.
    pub entries: Vec<EntryInfo>,
    /// Distinct kernel functions in the module.
    pub functions: usize,
    /// Bytes of the arena of temporaries.
    pub arena_bytes: usize,
    /// Multiply-accumulates per image of the forward pass's contractions.
    pub forward_macs: u64,
}

/// Compiles `configuration` of `front`'s model and fills its parameters and feeds.
///
/// # Errors
///
/// Autodiff refuses the graph (a user error), or code generation, JIT compilation or
/// initialisation fails (internal errors).
pub fn prepare(front: &Front, configuration: &Configuration) -> Result<Prepared, Failure> {
    let forward = front.forward(configuration.phase);
    let mut times = CompileTimes {
        front: front.seconds,
        ..CompileTimes::default()
    };

    // Training and inference graphs of the phase's network.
    let started = Instant::now();
    let graphs = entry_graphs(forward, configuration.mode)?;
    times.autodiff = started.elapsed().as_secs_f64();

    // Schedule and emit every entry into one program.
    let started = Instant::now();
    let entries: Vec<EntryGraph<'_>> = graphs
        .iter()
        .map(|(name, graph, mode)| EntryGraph {
            name,
            graph,
            mode: *mode,
        })
        .collect();
    let compiled = compile_entries(&entries, Some(&front.source), configuration.batch)
        .map_err(Failure::internal)?;
    let infos = entry_infos(&graphs, &compiled.schedules, &compiled.program);
    let mut program = compiled.program;
    if configuration.profile {
        program = profile::with_step_entries(&program);
    }
    times.codegen = started.elapsed().as_secs_f64();

    // JIT-compile it for this CPU.
    let started = Instant::now();
    let executable = CpuExecutable::compile(&program).map_err(|source| {
        BenchError::Target {
            stage: "compiling the program for the CPU",
            source,
        }
        .failure()
    })?;
    times.jit = started.elapsed().as_secs_f64();

    let store = initial_store(&program, &graphs, configuration.seed)?;
    let feeds = Feeds::random(&program, configuration)?;
    Ok(Prepared {
        executable,
        store,
        feeds,
        times,
        entries: infos,
        functions: compiled.functions,
        arena_bytes: program.arena_bytes,
        forward_macs: flops::forward_macs(forward),
    })
}

/// The graphs of the entries `mode` measures: name, graph and how it is scheduled.
fn entry_graphs(
    forward: &Graph,
    mode: Mode,
) -> Result<Vec<(&'static str, Graph, GraphMode)>, Failure> {
    let mut graphs = Vec::with_capacity(2);
    if mode.trains() {
        let training =
            autodiff::training_graph(forward, &SgdOptions::default()).map_err(Failure::user)?;
        graphs.push((TRAIN_STEP, training, GraphMode::Train));
    }
    if mode.infers() {
        let inference = autodiff::inference_graph(forward).map_err(Failure::user)?;
        graphs.push((INFER_STEP, inference, GraphMode::Eval));
    }
    Ok(graphs)
}

/// The steps of every entry, described from its schedule (step `i` runs kernel `i`).
fn entry_infos(
    graphs: &[(&'static str, Graph, GraphMode)],
    schedules: &[Schedule],
    program: &Program,
) -> Vec<EntryInfo> {
    let entries = graphs.iter().zip(schedules).zip(&program.entries);
    entries
        .map(|(((name, graph, _), schedule), entry)| EntryInfo {
            name,
            kernels: schedule
                .kernels
                .iter()
                .zip(&entry.steps)
                .map(|(kernel, step)| kernel_info(graph, kernel, &step.kernel))
                .collect(),
        })
        .collect()
}

/// The kind and ops of a scheduled kernel.
fn kernel_info(graph: &Graph, kernel: &compiler::schedule::Kernel, name: &str) -> KernelInfo {
    let mut ops: Vec<&str> = Vec::new();
    for &id in &kernel.nodes {
        let name = graph.node(id).op.name();
        if !ops.contains(&name) {
            ops.push(name);
        }
    }
    let ops = if ops.is_empty() {
        "copy".to_string()
    } else {
        ops.join("+")
    };
    KernelInfo {
        kernel: name.to_string(),
        kind: format!("{:?}", kernel.kind).to_lowercase(),
        ops,
        macs: flops::macs_of(graph, &kernel.nodes),
    }
}

/// Every persistent tensor of `program` with its seeded initial value (as `coopc train`
/// initialises it: PyTorch's defaults, zero momentum).
fn initial_store(
    program: &Program,
    graphs: &[(&'static str, Graph, GraphMode)],
    seed: u64,
) -> Result<ParamStore, Failure> {
    let mut values = compiler::reference::State::new();
    for (_, graph, _) in graphs {
        values.extend(init_params(graph, seed));
    }
    let mut store = ParamStore::default();
    let persistent = program
        .tensors
        .iter()
        .filter(|slot| slot.storage == Storage::Persistent);
    for slot in persistent {
        let Some(found) = values.get(&slot.name) else {
            let name = slot.name.clone();
            return Err(BenchError::MissingInitialValue { name }.failure());
        };
        let data = found.iter().map(|&value| value as f32).collect();
        store.insert(slot.name.clone(), HostTensor::f32(slot.shape(1), data));
    }
    Ok(store)
}

/// The data of one feed.
enum FeedData {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// The random feeds of a program, by name: images from a standard normal, labels uniform over
/// the classes, the learning rate, and a dropout seed.
pub struct Feeds {
    tensors: Vec<(String, FeedData)>,
}

impl Feeds {
    /// Fills every feed slot of `program` for a batch of `configuration.batch`.
    ///
    /// # Errors
    ///
    /// A feed of a kind the benchmark does not know (an internal error).
    fn random(program: &Program, configuration: &Configuration) -> Result<Feeds, Failure> {
        let mut rng = Rng::derive(configuration.seed, &[u64::from_le_bytes(*b"benchdat")]);
        let classes = program
            .tensors
            .iter()
            .find(|slot| slot.name == LOGITS)
            .and_then(|slot| slot.dims.last().copied())
            .unwrap_or(1) as u64;
        let batch = configuration.batch;
        let mut tensors = Vec::new();
        for slot in program
            .tensors
            .iter()
            .filter(|slot| slot.storage == Storage::Feed)
        {
            let count = slot.elements(batch);
            let data = match (slot.dtype, slot.name.as_str()) {
                (DType::I32, LABELS) => {
                    FeedData::I32((0..count).map(|_| rng.below(classes) as i32).collect())
                }
                (DType::I32, DROPOUT_SEED) => {
                    FeedData::I32((0..count).map(|_| rng.next_u32() as i32).collect())
                }
                (DType::F32, LEARNING_RATE) => FeedData::F32(vec![configuration.lr; count]),
                (DType::F32, _) if slot.batched => {
                    FeedData::F32((0..count).map(|_| rng.next_normal()).collect())
                }
                _ => {
                    let name = slot.name.clone();
                    return Err(BenchError::UnknownFeed { name }.failure());
                }
            };
            tensors.push((slot.name.clone(), data));
        }
        Ok(Feeds { tensors })
    }

    /// The feeds as the target takes them.
    pub fn views(&self) -> Vec<(&str, TensorRef<'_>)> {
        self.tensors
            .iter()
            .map(|(name, data)| {
                let view = match data {
                    FeedData::F32(values) => TensorRef::F32(values),
                    FeedData::I32(values) => TensorRef::I32(values),
                };
                (name.as_str(), view)
            })
            .collect()
    }
}
