//! The graph IR: ops, types and the graph that holds them.

pub mod builder;
pub mod graph;
pub mod op;
pub mod print;
pub mod verify;

pub use builder::GraphBuilder;
pub use graph::{Graph, Node, NodeId};
pub use op::{Activation, DType, Init, Op, Pair, ParamRole, TensorType};
