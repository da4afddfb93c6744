//! Tests of autodiff: per-op and whole-network gradient checks against finite differences
//! through the reference interpreter, optimizer and running-statistic steps against values
//! computed by hand, and the structure of the training and evaluation graphs.

mod gradcheck;
mod models;
mod net;
mod networks;
mod ops;
mod sgd;
mod structure;
