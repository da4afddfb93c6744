//! coopc's runtime: compiled programs as plain data, their execution on the CPU, data sets,
//! and the training loop. It knows nothing of the `.coop` language or the graph IR.

pub mod checkpoint;
pub mod data;
pub mod experiment;
pub mod metrics;
pub mod program;
pub mod rng;
pub mod schedule_lr;
pub mod target;
pub mod train;
