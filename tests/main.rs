//! Integration tests of the `coopc` binary and its crates, linked into one test binary.
