//! The `.coop` language: its pest grammar, the AST with source spans, and the parser.
//!
//! pest types never leave this crate: the parser converts each pair into an AST node that keeps
//! a [`Span`], and pest's syntax errors into [`error::ParseError`] reports.
#![warn(missing_docs)]

pub mod ast;
pub mod span;

pub use span::{SourceFile, Span};
