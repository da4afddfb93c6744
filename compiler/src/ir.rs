//! The graph IR: ops, types and the graph that holds them.

pub mod graph;
pub mod op;

pub use graph::{Graph, Node, NodeId};
pub use op::{Activation, DType, Init, Op, Pair, ParamRole, TensorType};
