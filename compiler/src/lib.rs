//! coopc's compiler: the graph IR built from the `.coop` AST, its passes (`coop`, `lower`),
//! autodiff, scheduling, and MLIR emission.
//!
//! Meaning of the IR: every node computes one tensor from its operands; parameters are nodes
//! (`Op::Param`) with stable hierarchical names; the batch dimension is symbolic. See
//! [`ir::op`] for each op's exact semantics and `docs/ir.md` for the user-facing table.
#![warn(missing_docs)]

pub mod autodiff;
pub mod build;
pub mod codegen;
pub mod error;
pub mod infer;
pub mod ir;
pub mod mlir;
pub mod passes;
pub mod pipeline;
pub mod reference;
pub mod schedule;
pub mod summary;
