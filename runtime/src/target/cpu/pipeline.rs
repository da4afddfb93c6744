//! From MLIR text to a module in the LLVM dialect: an MLIR context with every dialect and
//! translation registered, parsing and verification with diagnostics collected, and the
//! lowering pass pipeline of the CPU target.
//!
//! Invariant: every failure returns the diagnostics MLIR emitted while it happened (with
//! their locations); nothing is printed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use melior::dialect::DialectRegistry;
use melior::ir::block::BlockLike;
use melior::ir::operation::{OperationLike, WalkOrder, WalkResult};
use melior::ir::Module;
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::Context;

use crate::target::{MlirDiagnostic, TargetError};

/// The lowering stages, in order: a name (for logs and errors) and an MLIR pass pipeline.
///
/// 1. Linalg to loops: named ops become `linalg.generic`, which becomes `scf.for` nests of
///    scalar code over static inner dimensions; LLVM's loop vectoriser (at `-O3`, for the
///    host CPU) vectorises the innermost loops. Contractions never reach this stage: the
///    compiler emits them as calls of the micro-kernels.
/// 2. Loops to LLVM: structured control flow, strided metadata, memrefs, math (intrinsics,
///    then libm for what has no intrinsic), arithmetic and functions to the LLVM dialect;
///    `llvm.emit_c_interface` functions get their `_mlir_ciface_` wrappers here.
pub const STAGES: [(&str, &str); 2] = [
    (
        "linalg to loops",
        "builtin.module(func.func(linalg-generalize-named-ops, linalg-fuse-elementwise-ops, \
         convert-linalg-to-loops, canonicalize, cse, loop-invariant-code-motion))",
    ),
    (
        "loops to llvm",
        "builtin.module(convert-scf-to-cf, expand-strided-metadata, lower-affine, \
         finalize-memref-to-llvm, func.func(convert-math-to-llvm), convert-math-to-libm, \
         convert-arith-to-llvm, convert-index-to-llvm, convert-cf-to-llvm, \
         convert-func-to-llvm, reconcile-unrealized-casts, canonicalize)",
    ),
];

/// An MLIR context with all dialects, passes and LLVM translations registered, and a handler
/// that collects its diagnostics.
pub struct MlirSession {
    /// The context (multi-threaded: function passes run in parallel).
    pub context: Context,
    diagnostics: Arc<Mutex<Vec<MlirDiagnostic>>>,
}

impl MlirSession {
    /// Creates the context and attaches the collecting diagnostic handler.
    pub fn new() -> Self {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        register_all_passes();
        let context = Context::new_with_registry(&registry, true);
        context.load_all_available_dialects();
        register_all_llvm_translations(&context);
        let diagnostics = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&diagnostics);
        context.attach_diagnostic_handler(move |diagnostic| {
            let notes = (0..diagnostic.note_count())
                .filter_map(|index| diagnostic.note(index).ok())
                .map(|note| format!("{}: {note}", note.location()))
                .collect();
            let record = MlirDiagnostic {
                severity: format!("{:?}", diagnostic.severity()).to_lowercase(),
                location: diagnostic.location().to_string(),
                message: diagnostic.to_string(),
                notes,
            };
            sink.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(record);
            true
        });
        MlirSession {
            context,
            diagnostics,
        }
    }

    /// Takes the diagnostics collected so far.
    pub fn take_diagnostics(&self) -> Vec<MlirDiagnostic> {
        std::mem::take(
            &mut *self
                .diagnostics
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Parses and verifies `text`.
    ///
    /// # Errors
    ///
    /// [`TargetError::Parse`] or [`TargetError::Verify`] with MLIR's diagnostics.
    pub fn parse(&self, text: &str) -> Result<Module<'_>, TargetError> {
        let Some(module) = Module::parse(&self.context, text) else {
            return Err(TargetError::Parse {
                diagnostics: self.take_diagnostics(),
            });
        };
        if !module.as_operation().verify() {
            return Err(TargetError::Verify {
                diagnostics: self.take_diagnostics(),
            });
        }
        Ok(module)
    }

    /// Runs the lowering [`STAGES`] on a verified module and checks that only LLVM dialect
    /// operations remain.
    ///
    /// # Errors
    ///
    /// [`TargetError::Lower`] naming the failed stage, or [`TargetError::NotLowered`].
    pub fn lower(&self, module: &mut Module<'_>) -> Result<(), TargetError> {
        for (stage, pipeline) in STAGES {
            let started = Instant::now();
            let manager = PassManager::new(&self.context);
            parse_pass_pipeline(manager.as_operation_pass_manager(), pipeline).map_err(
                |error| TargetError::Lower {
                    stage: format!("{stage}: {error}"),
                    diagnostics: Vec::new(),
                },
            )?;
            if manager.run(module).is_err() {
                let diagnostics = self.take_diagnostics();
                return Err(TargetError::Lower {
                    stage: stage.to_owned(),
                    diagnostics,
                });
            }
            tracing::debug!(
                stage,
                seconds = started.elapsed().as_secs_f64(),
                "lowering stage"
            );
        }
        first_unlowered(module).map_or(Ok(()), Err)
    }
}

impl Default for MlirSession {
    fn default() -> Self {
        Self::new()
    }
}

/// The function type of every top-level `func.func` of a module (before lowering), by name,
/// as MLIR prints it, e.g. `(memref<?x16xf32>, memref<f32>) -> ()`.
pub fn kernel_signatures(module: &Module<'_>) -> HashMap<String, String> {
    let mut signatures = HashMap::new();
    let mut operation = module.body().first_operation();
    while let Some(current) = operation {
        let is_function = current.name().as_string_ref().as_str() == Ok("func.func");
        let name = current
            .attribute("sym_name")
            .ok()
            .map(|value| value.to_string());
        let ty = current
            .attribute("function_type")
            .ok()
            .map(|value| value.to_string());
        if let (true, Some(name), Some(ty)) = (is_function, name, ty) {
            signatures.insert(name.trim_matches('"').to_owned(), ty);
        }
        operation = current.next_in_block();
    }
    signatures
}

/// The first operation that is neither the module nor in the LLVM dialect, as an error.
fn first_unlowered(module: &Module<'_>) -> Option<TargetError> {
    let mut found = None;
    module
        .as_operation()
        .walk(WalkOrder::PreOrder, |operation| {
            let name = operation.name();
            let name = name.as_string_ref().as_str().unwrap_or("?");
            if name == "builtin.module" || name.starts_with("llvm.") {
                return WalkResult::Advance;
            }
            let location = operation.location().to_string();
            found = Some(TargetError::NotLowered {
                op: name.to_owned(),
                location,
            });
            WalkResult::Interrupt
        });
    found
}
