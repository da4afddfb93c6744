//! The `coopc` command line.

fn main() {}
