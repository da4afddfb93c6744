//! coopc's runtime: compiled programs as plain data, their execution on the CPU, data sets,
//! and the training loop. It knows nothing of the `.coop` language or the graph IR.

pub mod program;
pub mod target;
pub mod rng;
pub mod data;
pub mod schedule_lr;
pub mod experiment;
pub mod checkpoint;
pub mod metrics;
pub mod train;
