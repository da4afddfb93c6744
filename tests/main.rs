//! Integration tests of the `coopc` binary and its crates, linked into one test binary.

mod bench_cli;
mod cli;
mod errors;
mod lowering;
mod no_panic;
mod params;
mod snapshots;
mod support;
mod train_run;
mod train_support;
mod train_variants;
