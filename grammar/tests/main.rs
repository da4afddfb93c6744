//! Integration tests of the `grammar` crate, one binary: sample sources parse to the expected
//! AST, every syntax error renders a clear report, and no input makes the parser panic.

mod errors;
mod no_panic;
mod samples;
mod sources;
