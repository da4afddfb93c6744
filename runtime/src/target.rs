//! Execution targets: what compiles a [`crate::program::Program`] for a device and runs its
//! entries. `cpu` JIT-compiles the program's MLIR in process; every target reports failures
//! as a [`TargetError`].

pub mod cpu;

use crate::program::{DType, ProgramError};
use crate::target::cpu::ukernels::UkernelError;

/// One diagnostic MLIR emitted (parse, verification or pass failure), with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlirDiagnostic {
    /// `error`, `warning`, `note` or `remark`.
    pub severity: String,
    /// Where, as MLIR prints locations (e.g. `"models/lenet.coop":3:5`).
    pub location: String,
    /// The message.
    pub message: String,
    /// Attached notes, each `location: message`.
    pub notes: Vec<String>,
}

impl std::fmt::Display for MlirDiagnostic {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}: {}: {}",
            self.location, self.severity, self.message
        )?;
        for note in &self.notes {
            write!(formatter, "\n  note: {note}")?;
        }
        Ok(())
    }
}

/// Prints diagnostics one per line.
fn lines(diagnostics: &[MlirDiagnostic]) -> String {
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    text.join("\n")
}

/// Why a program could not be compiled or run on a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The program's tables are inconsistent.
    #[error("invalid program: {0}")]
    Program(#[from] ProgramError),
    /// The MLIR text does not parse.
    #[error("the MLIR module does not parse:\n{}", lines(.diagnostics))]
    Parse {
        /// What MLIR reported.
        diagnostics: Vec<MlirDiagnostic>,
    },
    /// The MLIR module parses but does not verify.
    #[error("the MLIR module does not verify:\n{}", lines(.diagnostics))]
    Verify {
        /// What MLIR reported.
        diagnostics: Vec<MlirDiagnostic>,
    },
    /// The lowering pass pipeline failed.
    #[error("lowering to LLVM failed ({stage}):\n{}", lines(.diagnostics))]
    Lower {
        /// The pipeline stage, or the pipeline text when it did not parse.
        stage: String,
        /// What MLIR reported.
        diagnostics: Vec<MlirDiagnostic>,
    },
    /// After lowering, an operation outside the LLVM dialect remains.
    #[error("operation `{op}` at {location} was not lowered to LLVM")]
    NotLowered {
        /// The operation's name.
        op: String,
        /// Its location.
        location: String,
    },
    /// LLVM translation, optimisation, code generation or linking failed.
    #[error("JIT compilation failed: {message}\n{}", lines(.diagnostics))]
    Jit {
        /// LLVM's message.
        message: String,
        /// What MLIR reported meanwhile (translation failures are reported there).
        diagnostics: Vec<MlirDiagnostic>,
    },
    /// A kernel's MLIR signature is not the one its step's tensor slots describe.
    #[error("kernel `{kernel}` has type `{found}`; its step's tensors need `{expected}`")]
    KernelSignature {
        /// The kernel.
        kernel: String,
        /// The function type the slots describe.
        expected: String,
        /// The function type in the module.
        found: String,
    },
    /// A step names a kernel the module does not define.
    #[error("kernel `{kernel}` (entry `{entry}`) is not defined by the module")]
    MissingKernel {
        /// The entry.
        entry: String,
        /// The kernel.
        kernel: String,
    },
    /// No entry has this name.
    #[error("no entry `{entry}`; the program has {available:?}")]
    UnknownEntry {
        /// The requested entry.
        entry: String,
        /// The entries there are.
        available: Vec<String>,
    },
    /// The batch size is 0 or above the program's maximum.
    #[error("batch size {batch} outside 1..={max_batch}")]
    BadBatch {
        /// The requested batch.
        batch: usize,
        /// The program's maximum.
        max_batch: usize,
    },
    /// A feed, or a persistent tensor, the entry needs was not provided.
    #[error("the entry needs tensor `{name}`, which was not provided")]
    MissingTensor {
        /// The slot's name.
        name: String,
    },
    /// A provided tensor has the wrong element type or size.
    #[error(
        "tensor `{name}`: expected {expected_dtype:?} with shape {expected:?}, got \
         {found_dtype:?} with {found} elements"
    )]
    TensorMismatch {
        /// The slot's name.
        name: String,
        /// Its element type.
        expected_dtype: DType,
        /// Its shape for this call.
        expected: Vec<usize>,
        /// The provided element type.
        found_dtype: DType,
        /// The provided number of elements.
        found: usize,
    },
    /// A micro-kernel refused its arguments during a step.
    #[error("entry `{entry}`, step {step} (kernel `{kernel}`): {source}")]
    Ukernel {
        /// The entry.
        entry: String,
        /// The step index.
        step: usize,
        /// The kernel that called the micro-kernel.
        kernel: String,
        /// What the micro-kernel reported.
        source: UkernelError,
    },
}
