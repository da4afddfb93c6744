//! The `.coop` language: its pest grammar, the AST with source spans, and the parser.
//!
//! pest types never leave this crate: the parser converts each pair into an AST node that keeps
//! a [`Span`], and pest's syntax errors into [`ParseError`] reports. The language itself is
//! described in `docs/language.md`. The AST types implement `Display`, printing canonical
//! source that parses back to the same tree.
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod ast;
pub mod error;
pub mod parse;
mod print;
mod rules;
mod scan;
pub mod span;
mod syntax;

pub use error::{render_report, ParseError};
pub use parse::parse;
pub use scan::MAX_NESTING;
pub use span::{SourceFile, Span};
