//! The printed form of a schedule (`coopc compile --emit schedule`, and its snapshots): the
//! kernels in run order with their fused ops and arguments, then the buffer plan and the peak.
//!
//! Invariant: nodes are numbered by their position in the graph's topological order, so the
//! text depends only on the graph's content, not on how a pass allocated node ids.

use std::fmt::Write as _;

use runtime::program::Storage;

use crate::ir::{DType, Graph, NodeId, TensorType};

use super::{Access, Kernel, Schedule, Value};

/// `f32[N,16,32,32]`, `i32[N]`, `f32[]`.
pub fn type_text(ty: &TensorType) -> String {
    let dtype = match ty.dtype {
        DType::F32 => "f32",
        DType::I32 => "i32",
    };
    let mut dims: Vec<String> = ty.dims.iter().map(usize::to_string).collect();
    if ty.batched {
        dims.insert(0, "N".to_string());
    }
    format!("{dtype}[{}]", dims.join(","))
}

/// Bytes as a short human-readable size (`512 B`, `1.5 KiB`, `12.0 MiB`).
pub fn bytes_text(bytes: usize) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if value < KIB {
        format!("{bytes} B")
    } else if value < KIB * KIB {
        format!("{:.1} KiB", value / KIB)
    } else {
        format!("{:.1} MiB", value / (KIB * KIB))
    }
}

/// The schedule as text.
pub fn print_schedule(schedule: &Schedule) -> String {
    let graph = &schedule.graph;
    let number = node_numbers(graph);
    let plan = &schedule.plan;
    let mut out = String::new();
    let stats = &schedule.stats;
    let _ = writeln!(
        out,
        "schedule: {} kernels ({} fused) computing {} nodes; max batch {}",
        stats.kernels, stats.fused_kernels, stats.computed_nodes, plan.max_batch
    );
    for (position, kernel) in schedule.kernels.iter().enumerate() {
        let _ = writeln!(out, "{}", kernel_line(graph, &number, position, kernel));
        for arg in &kernel.args {
            let access = match arg.access {
                Access::Read => "read",
                Access::Write => "write",
                Access::Update => "update",
            };
            let slot = plan
                .slot_of
                .get(&arg.value)
                .map_or("?".to_string(), |s| format!("s{s}"));
            let value = value_text(graph, &schedule.temporaries, &number, arg.value);
            let _ = writeln!(out, "    {access:<6} {value} -> {slot}");
        }
    }
    let _ = writeln!(out, "buffers:");
    for (index, slot) in plan.slots.iter().enumerate() {
        let storage = match slot.storage {
            Storage::Persistent => "persistent".to_string(),
            Storage::Feed => "feed".to_string(),
            Storage::Output => "output".to_string(),
            Storage::Arena { offset_bytes } => format!("arena+{offset_bytes}"),
        };
        let _ = writeln!(
            out,
            "  s{index:<4} {:<36} {:<18} {storage:<14} {:>10}  k{}..k{}",
            slot.name,
            type_text(&slot.ty),
            bytes_text(slot.bytes(plan.max_batch)),
            slot.lifetime.0,
            slot.lifetime.1
        );
    }
    let persistent = plan.bytes_of(|storage| *storage == Storage::Persistent);
    let io = plan.bytes_of(|storage| matches!(storage, Storage::Feed | Storage::Output));
    let _ = writeln!(
        out,
        "arena {} (without reuse {}), persistent {}, feeds and outputs {}; peak {} ({} bytes)",
        bytes_text(plan.arena_bytes),
        bytes_text(plan.unshared_bytes),
        bytes_text(persistent),
        bytes_text(io),
        bytes_text(plan.peak_bytes()),
        plan.peak_bytes()
    );
    out
}

fn kernel_line(graph: &Graph, number: &[usize], position: usize, kernel: &Kernel) -> String {
    let kind = format!("{:?}", kernel.kind).to_lowercase();
    let ops: Vec<String> = kernel
        .nodes
        .iter()
        .map(|&id| format!("{} %{}", graph.node(id).op.name(), number[id.index()]))
        .collect();
    let split = if kernel.batch_split {
        "  [batch split]"
    } else {
        ""
    };
    format!("k{position} {kind}: {}{split}", ops.join(", "))
}

fn value_text(graph: &Graph, temporaries: &[TensorType], number: &[usize], value: Value) -> String {
    match value {
        Value::Node(id) => {
            let node = graph.node(id);
            format!(
                "%{} {} {}",
                number[id.index()],
                node.op.name(),
                type_text(&node.ty)
            )
        }
        Value::DropoutSeed => "dropout seed i32[2]".to_string(),
        Value::Temporary(index) => match temporaries.get(index) {
            Some(ty) => format!("temporary #{index} {}", type_text(ty)),
            None => format!("temporary #{index}"),
        },
        Value::Output(index) => match graph.outputs().get(index) {
            Some((name, id)) => format!("output `{name}` (copy of %{})", number[id.index()]),
            None => format!("output {index}"),
        },
    }
}

/// Position of every node in the graph's topological order, by node index.
fn node_numbers(graph: &Graph) -> Vec<usize> {
    let order: Vec<NodeId> = graph
        .topological_order()
        .unwrap_or_else(|| graph.node_ids());
    let bound = graph
        .node_ids()
        .iter()
        .map(|id| id.index() + 1)
        .max()
        .unwrap_or(0);
    let mut number = vec![0; bound];
    for (position, id) in order.iter().enumerate() {
        number[id.index()] = position;
    }
    number
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, Op, ParamRole};
    use crate::mlir::kernel_tests::Net;
    use crate::schedule::{schedule, GraphMode};

    #[test]
    fn schedule_of_a_small_training_graph() {
        let mut net = Net::new();
        let x = net.input("image", &[3, 6, 6]);
        let w = net.param("conv.weight", ParamRole::Weight, &[4, 3, 3, 3]);
        let conv = Op::Conv2d {
            stride: [1, 1],
            padding: [1, 1],
            bias: false,
        };
        let c = net.add(conv, TensorType::batch(vec![4, 6, 6]), &[x, w]);
        let vector = TensorType::fixed(vec![4]);
        let mean = net.add(Op::BatchMean, vector.clone(), &[c]);
        let var = net.add(Op::BatchVar, vector, &[c, mean]);
        let scale = net.param("bn.scale", ParamRole::BatchNormScale, &[4]);
        let shift = net.param("bn.shift", ParamRole::BatchNormShift, &[4]);
        let y = net.same(
            Op::BatchNormApply { eps: 1e-5 },
            &[c, mean, var, scale, shift],
        );
        let r = net.same(Op::Activation(Activation::Relu), &[y]);
        let dr = net.input("dr", &[4, 6, 6]);
        let g = net.same(Op::ActivationGrad(Activation::Relu), &[dr, y]);
        let dw = net.add(
            Op::Conv2dWeightGrad {
                stride: [1, 1],
                padding: [1, 1],
            },
            net.ty(w),
            &[g, x],
        );
        let buffer = net.param(
            "conv.weight.momentum",
            ParamRole::MomentumBuffer,
            &[4, 3, 3, 3],
        );
        let lr = net.scalar("lr");
        let sgd = Op::SgdUpdate {
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: false,
        };
        net.same(sgd, &[w, dw, buffer, lr]);
        net.output("r", r);
        let schedule = schedule(&net.graph, 8, GraphMode::Train).expect("schedule");
        insta::assert_snapshot!(print_schedule(&schedule));
    }
}
