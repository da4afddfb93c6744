//! The rewrites of the graph IR that define cooperative initialization, one module per pass.
//!
//! Each pass is a plain function `run(graph, options) -> Result<PassStats, PassError>` whose
//! module documentation is its contract: what it needs, what it promises, which node ids
//! survive. The module name is the pass name used in logs, CLI flags and snapshot names.

pub mod coop;
pub mod lower;

use miette::Diagnostic;
use thiserror::Error;

use grammar::Span;

use crate::error::{BuildError, OptionError};

/// What a pass changed, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassStats {
    /// The pass's name (`coop`, `lower`, `wnla`).
    pub pass: &'static str,
    /// Sites rewritten (activations expanded, mixes lowered).
    pub rewritten: usize,
    /// Nodes added, parameters included.
    pub nodes_added: usize,
    /// Nodes removed, parameters included.
    pub nodes_removed: usize,
    /// Names of the parameters created.
    pub params_added: Vec<String>,
    /// Names of the parameters removed because nothing used them any more.
    pub params_removed: Vec<String>,
}

/// Why a pass could not run.
#[derive(Clone, Debug, PartialEq, Error, Diagnostic)]
pub enum PassError {
    /// The pass's options are not acceptable.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Options(OptionError),
    /// A node the pass creates could not be typed or named: the input graph breaks the pass's
    /// contract.
    #[error("pass `{pass}` could not rewrite a node: {error}")]
    #[diagnostic(code(pass::rewrite))]
    Rewrite {
        /// The pass.
        pass: &'static str,
        /// What failed (boxed: errors stay small on the happy path).
        error: Box<BuildError>,
        /// The node being rewritten.
        #[label("while rewriting this")]
        span: Span,
    },
    /// A `Mix` whose operands are not activations of one common input.
    #[error("pass `{pass}` found a malformed `mix`")]
    #[diagnostic(code(pass::malformed_mix))]
    MalformedMix {
        /// The pass.
        pass: &'static str,
        /// The mix.
        #[label("this mix")]
        span: Span,
    },
}

impl PassError {
    /// True when the failure is a bug in coopc (a graph breaking a pass's contract) rather than
    /// a bad option.
    pub fn is_internal(&self) -> bool {
        !matches!(self, PassError::Options(_))
    }
}

/// Removes every parameter node that no node uses, returning their names in creation order.
pub(crate) fn remove_unused_params(graph: &mut crate::ir::Graph) -> Vec<String> {
    let mut removed = Vec::new();
    for id in graph.params() {
        if graph.users(id).is_empty() && !graph.outputs().iter().any(|(_, output)| *output == id) {
            if let Some(node) = graph.remove(id) {
                if let crate::ir::Op::Param { name, .. } = node.op {
                    removed.push(name);
                }
            }
        }
    }
    removed
}
