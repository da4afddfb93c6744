//! The `mlir` emitter: each kernel of a schedule as an MLIR function (text), and the module
//! that holds them all.
//!
//! Needs: a [`Schedule`] of a graph and the storage type of every kernel argument (from the
//! buffer plan). Promises: one `func.func` per distinct kernel, in the calling convention of
//! `runtime::program` (one memref argument per kernel argument, destination-passing style,
//! `llvm.emit_c_interface`); kernels whose text is identical up to locations share one
//! function; every op carries a `loc("file":line:column)` of the node it computes (a shared
//! function keeps the locations of its first use). The code is target-neutral: `linalg`,
//! `arith`, `math`, `scf` and `memref`, plus calls of the contraction micro-kernels.
//!
//! Reductions run in a fixed order (per-lane partial sums, then the lanes in order), so results
//! are bitwise reproducible.

mod approx;
mod batchnorm;
mod contraction;
mod dropout;
mod effect;
mod elementwise;
pub mod generic;
#[cfg(test)]
pub(crate) mod kernel_tests;
mod loss;
mod pool;
mod reduce;
pub mod scalar;
#[cfg(test)]
mod snapshot_tests;
mod window;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};

use grammar::{SourceFile, Span};

use crate::ir::{Graph, NodeId, TensorType};
pub use crate::schedule::GraphMode;
use crate::schedule::{Kernel, KernelKind, Value};

use generic::{memref_of, view_as, Buffer};
use writer::{location_text, FunctionWriter};

/// Why a kernel could not be emitted (an op, shape or combination the emitter does not
/// handle; a bug in an earlier pass or a limit of the CPU/GPU kernels).
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum MlirError {
    /// An operand's type cannot be read inside an element-wise kernel of the given type.
    #[error("`{op}`: an operand of type {operand:?} cannot be broadcast over {space:?}")]
    UnsupportedBroadcast {
        /// The op.
        op: &'static str,
        /// The operand's type.
        operand: TensorType,
        /// The kernel's iteration type.
        space: TensorType,
        /// Where the op came from.
        #[label("in this op")]
        span: Span,
    },
    /// A view between two types that do not hold the same bytes.
    #[error("cannot view a value of type {from:?} as {to:?}")]
    UnsupportedView {
        /// The stored type.
        from: TensorType,
        /// The type it is used as.
        to: TensorType,
    },
    /// An op with a shape the kernels do not support (e.g. pooling of a non-4-D tensor).
    #[error("`{op}` does not support operands of type {ty:?}: {reason}")]
    UnsupportedShape {
        /// The op.
        op: &'static str,
        /// The offending type.
        ty: TensorType,
        /// What is required.
        reason: &'static str,
        /// Where the op came from.
        #[label("this op")]
        span: Span,
    },
    /// A kernel's argument list does not match what its op needs (a scheduler bug).
    #[error("internal error: kernel for `{op}` has arguments that do not match the op")]
    BadKernel {
        /// The op.
        op: &'static str,
    },
}

/// One kernel to emit: the schedule's kernel, the graph it came from, and the stored type of
/// each argument (which differs from the value's type for views).
pub struct KernelInput<'a> {
    /// The graph.
    pub graph: &'a Graph,
    /// The kernel.
    pub kernel: &'a Kernel,
    /// Type of the storage slot bound to each argument.
    pub slot_types: Vec<TensorType>,
    /// For each argument, the earlier argument bound to the same storage slot, if any (an
    /// element-wise result written over a dying operand).
    pub same_slot_as: Vec<Option<usize>>,
    /// Training or evaluation.
    pub mode: GraphMode,
}

/// The emission state of one kernel function.
pub(crate) struct Emit<'a> {
    pub writer: FunctionWriter,
    pub graph: &'a Graph,
    pub kernel: &'a Kernel,
    /// Each argument as a memref of its value's type.
    pub args: Vec<Buffer>,
    /// The value type of each argument.
    pub types: Vec<TensorType>,
    pub same_slot_as: Vec<Option<usize>>,
    pub mode: GraphMode,
    source: Option<&'a SourceFile>,
    /// Micro-kernel declarations the function needs.
    pub declarations: BTreeSet<&'static str>,
}

impl Emit<'_> {
    /// The `loc(...)` text of `node`'s source (empty without a source file).
    pub fn location_of(&self, node: NodeId) -> String {
        let span = self.graph.node(node).span;
        match self.source {
            Some(file) => {
                let (line, column) = file.line_column(span.start);
                location_text(&file.name, line, column)
            }
            None => String::new(),
        }
    }

    /// Points the locations of the ops written next at `node`'s source.
    pub fn locate(&mut self, node: NodeId) {
        let location = self.location_of(node);
        self.writer.set_location(location);
    }

    /// The op name and span of `node`, for errors.
    pub fn describe(&self, node: NodeId) -> (&'static str, Span) {
        let node = self.graph.node(node);
        (node.op.name(), node.span)
    }

    /// Index of the argument bound to `value`.
    pub fn arg_of(&self, value: NodeId) -> Option<usize> {
        self.kernel
            .args
            .iter()
            .position(|arg| arg.value == Value::Node(value))
    }
}

/// The MLIR module of a program under construction: deduplicated kernel functions and the
/// micro-kernel declarations they need.
#[derive(Debug, Default)]
pub struct ModuleBuilder {
    functions: Vec<String>,
    by_key: BTreeMap<String, String>,
    declarations: BTreeSet<&'static str>,
}

impl ModuleBuilder {
    /// An empty module.
    pub fn new() -> Self {
        ModuleBuilder::default()
    }

    /// Emits `input`'s kernel (or finds an identical one already emitted) and returns the name
    /// of its function.
    ///
    /// # Errors
    ///
    /// [`MlirError`] when the kernel holds an op or shape the emitter does not support.
    pub fn add_kernel(
        &mut self,
        input: &KernelInput<'_>,
        source: Option<&SourceFile>,
    ) -> Result<String, MlirError> {
        let (text, declarations) = emit_function(input, source)?;
        let key = strip_locations(&text);
        if let Some(name) = self.by_key.get(&key) {
            return Ok(name.clone());
        }
        let name = format!("k{}_{}", self.functions.len(), kernel_label(input));
        self.functions
            .push(text.replacen(FUNCTION_PLACEHOLDER, &format!("@{name}"), 1));
        self.by_key.insert(key, name.clone());
        self.declarations.extend(declarations);
        Ok(name)
    }

    /// Number of distinct functions so far.
    pub fn function_count(&self) -> usize {
        self.functions.len()
    }

    /// The module text.
    pub fn finish(self) -> String {
        let mut text = String::from("module {\n");
        for name in &self.declarations {
            text.push_str(contraction::declaration(name));
        }
        for function in &self.functions {
            text.push_str(function);
        }
        text.push_str("}\n");
        text
    }
}

const FUNCTION_PLACEHOLDER: &str = "@__kernel__";

/// A short readable name for a kernel: its kind and first op.
fn kernel_label(input: &KernelInput<'_>) -> String {
    match input.kernel.nodes.first() {
        Some(&id) => input.graph.node(id).op.name().to_string(),
        None => "copy".to_string(),
    }
}

/// Removes every ` loc(...)` suffix (file names are escaped, so they hold no parenthesis).
fn strip_locations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(" loc(") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        match after.find(')') {
            Some(end) => rest = &after[end + 1..],
            None => {
                rest = after;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The function text of one kernel (named [`FUNCTION_PLACEHOLDER`]) and the micro-kernels it
/// calls.
fn emit_function(
    input: &KernelInput<'_>,
    source: Option<&SourceFile>,
) -> Result<(String, BTreeSet<&'static str>), MlirError> {
    let kernel = input.kernel;
    let mut writer = FunctionWriter::new();
    let mut params = Vec::with_capacity(kernel.args.len());
    let mut args = Vec::with_capacity(kernel.args.len());
    let mut types = Vec::with_capacity(kernel.args.len());
    if let Some(&first) = kernel.nodes.first() {
        let span = input.graph.node(first).span;
        if let Some(file) = source {
            let (line, column) = file.line_column(span.start);
            writer.set_location(location_text(&file.name, line, column));
        }
    }
    for (index, (arg, slot_ty)) in kernel.args.iter().zip(&input.slot_types).enumerate() {
        let value_ty = match arg.value {
            Value::Node(id) => input.graph.node(id).ty.clone(),
            Value::Output(_) | Value::DropoutSeed | Value::Temporary(_) => slot_ty.clone(),
        };
        params.push(format!("%a{index}: {}", memref_of(slot_ty)));
        let stored = Buffer::of(format!("%a{index}"), slot_ty);
        args.push(view_as(&mut writer, &stored, slot_ty, &value_ty)?);
        types.push(value_ty);
    }
    let mut emit = Emit {
        writer,
        graph: input.graph,
        kernel,
        args,
        types,
        same_slot_as: input.same_slot_as.clone(),
        mode: input.mode,
        source,
        declarations: BTreeSet::new(),
    };
    match kernel.kind {
        KernelKind::Elementwise => elementwise::emit(&mut emit)?,
        KernelKind::Reduction | KernelKind::Partials => reduce::emit(&mut emit)?,
        KernelKind::Coefficients => batchnorm::emit_coefficients(&mut emit)?,
        KernelKind::Contraction => contraction::emit(&mut emit)?,
        KernelKind::Window => window::emit(&mut emit)?,
        KernelKind::Loss => loss::emit(&mut emit)?,
        KernelKind::Effect => effect::emit(&mut emit)?,
        KernelKind::Copy => effect::emit_copy(&mut emit)?,
    }
    let body = emit.writer.finish();
    let text = format!(
        "  func.func {FUNCTION_PLACEHOLDER}({}) attributes {{llvm.emit_c_interface}} \
         {{\n{body}  }}\n",
        params.join(", ")
    );
    Ok((text, emit.declarations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_locations_removes_every_suffix() {
        let text = "a loc(\"f\\28x\\29\":1:2)\nb loc(\"f\":3:4)\nc\n";
        assert_eq!(strip_locations(text), "a\nb\nc\n");
    }
}
