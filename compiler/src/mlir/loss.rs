//! Loss kernels over logits `[N, K]` and labels `i32[N]`: the mean softmax cross-entropy, its
//! gradient, and the number of correct predictions.
//!
//! Rows are visited in order and every sum runs in index order, so the scalar results are
//! reproducible bit for bit. A label outside `0..K` is clamped into range before it is used as
//! an index (the data loader rejects such labels; the clamp only keeps memory accesses in
//! bounds).

use crate::ir::Op;

use super::generic::{batch_size, Buffer};
use super::writer::FunctionWriter;
use super::{Emit, MlirError};

/// Emits the loss kernel.
pub(crate) fn emit(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    let node = emit.kernel.nodes[0];
    emit.locate(node);
    let op = emit.graph.node(node).op.clone();
    let inputs = emit.graph.inputs(node);
    let logits = inputs.first().and_then(|&id| emit.arg_of(id));
    let labels = inputs.get(1).and_then(|&id| emit.arg_of(id));
    let output = emit.arg_of(node);
    let (Some(logits), Some(labels), Some(output)) = (logits, labels, output) else {
        return Err(MlirError::BadKernel { op: op.name() });
    };
    let logits_ty = &emit.types[logits];
    if !logits_ty.batched || logits_ty.dims.len() != 1 || logits_ty.dims[0] == 0 {
        let (name, span) = emit.describe(node);
        let reason = "the loss needs logits of type f32[N, K] with K > 0";
        return Err(MlirError::UnsupportedShape {
            op: name,
            ty: logits_ty.clone(),
            reason,
            span,
        });
    }
    let (logits, labels, out) = (
        emit.args[logits].clone(),
        emit.args[labels].clone(),
        emit.args[output].clone(),
    );
    let writer = &mut emit.writer;
    match op {
        Op::SoftmaxCrossEntropy => cross_entropy(writer, &logits, &labels, &out),
        Op::SoftmaxCrossEntropyGrad => cross_entropy_grad(writer, &logits, &labels, &out),
        Op::CorrectCount => correct_count(writer, &logits, &labels, &out),
        other => return Err(MlirError::BadKernel { op: other.name() }),
    }
    Ok(())
}

/// `scf.for %i = 0 to bound` carrying one `f32`; returns `(induction variable, carried, result)`.
fn open_sum(writer: &mut FunctionWriter, bound: &str, init: &str) -> (String, String, String) {
    let zero = writer.index(0);
    let one = writer.index(1);
    let (index, carried, result) = (writer.fresh("i"), writer.fresh("s"), writer.fresh("r"));
    writer.open(&format!(
        "{result} = scf.for {index} = {zero} to {bound} step {one} \
         iter_args({carried} = {init}) -> (f32) {{"
    ));
    (index, carried, result)
}

fn close_sum(writer: &mut FunctionWriter, value: &str) {
    writer.line(&format!("scf.yield {value} : f32"));
    writer.close("}");
}

fn load(writer: &mut FunctionWriter, buffer: &Buffer, indices: &[&str]) -> String {
    writer.assign(
        "x",
        &format!(
            "memref.load {}[{}] : {}",
            buffer.name,
            indices.join(", "),
            buffer.ty()
        ),
    )
}

/// `(max_k l[row, k], Σ_k exp(l[row, k] − max))`.
fn row_statistics(writer: &mut FunctionWriter, logits: &Buffer, row: &str) -> (String, String) {
    let classes = writer.index(logits.static_dim(1));
    let minus_infinity = writer.f32(f32::NEG_INFINITY);
    let (k, best, max) = open_sum(writer, &classes, &minus_infinity);
    let value = load(writer, logits, &[row, &k]);
    let next = writer.assign("v", &format!("arith.maximumf {best}, {value} : f32"));
    close_sum(writer, &next);
    let zero = writer.f32(0.0);
    let (k, partial, sum) = open_sum(writer, &classes, &zero);
    let value = load(writer, logits, &[row, &k]);
    let shifted = writer.assign("v", &format!("arith.subf {value}, {max} : f32"));
    let exp = writer.assign("v", &format!("math.exp {shifted} : f32"));
    let next = writer.assign("v", &format!("arith.addf {partial}, {exp} : f32"));
    close_sum(writer, &next);
    (max, sum)
}

/// The label of `row` as an index clamped into `0..K`.
fn label_index(writer: &mut FunctionWriter, labels: &Buffer, row: &str, classes: usize) -> String {
    let label = writer.assign(
        "y",
        &format!("memref.load {}[{row}] : {}", labels.name, labels.ty()),
    );
    let zero = writer.i32(0);
    let last = writer.i32(classes.saturating_sub(1) as i64);
    let low = writer.assign("y", &format!("arith.maxsi {label}, {zero} : i32"));
    let clamped = writer.assign("y", &format!("arith.minsi {low}, {last} : i32"));
    writer.assign("y", &format!("arith.index_cast {clamped} : i32 to index"))
}

/// The batch size as an `f32`.
fn batch_as_float(writer: &mut FunctionWriter, batch: &str) -> String {
    let count = writer.assign("m", &format!("arith.index_cast {batch} : index to i64"));
    writer.assign("m", &format!("arith.sitofp {count} : i64 to f32"))
}

// loss = Σₙ −((l[n, yₙ] − maxₙ) − log Σₖ exp(l[n, k] − maxₙ)) / N
fn cross_entropy(writer: &mut FunctionWriter, logits: &Buffer, labels: &Buffer, out: &Buffer) {
    let batch = batch_size(writer, logits);
    let zero = writer.f32(0.0);
    let (row, total, sum) = open_sum(writer, &batch, &zero);
    let (max, exps) = row_statistics(writer, logits, &row);
    let label = label_index(writer, labels, &row, logits.static_dim(1));
    let target = load(writer, logits, &[&row, &label]);
    let shifted = writer.assign("v", &format!("arith.subf {target}, {max} : f32"));
    let log = writer.assign("v", &format!("math.log {exps} : f32"));
    let log_probability = writer.assign("v", &format!("arith.subf {shifted}, {log} : f32"));
    let next = writer.assign("v", &format!("arith.subf {total}, {log_probability} : f32"));
    close_sum(writer, &next);
    let count = batch_as_float(writer, &batch);
    let mean = writer.assign("v", &format!("arith.divf {sum}, {count} : f32"));
    writer.line(&format!(
        "memref.store {mean}, {}[] : {}",
        out.name,
        out.ty()
    ));
}

// dl[n, k] = (softmax(l[n])ₖ − [k = yₙ]) / N
fn cross_entropy_grad(writer: &mut FunctionWriter, logits: &Buffer, labels: &Buffer, out: &Buffer) {
    let batch = batch_size(writer, logits);
    let count = batch_as_float(writer, &batch);
    let zero = writer.index(0);
    let one = writer.index(1);
    let row = writer.fresh("i");
    writer.open(&format!(
        "scf.parallel ({row}) = ({zero}) to ({batch}) step ({one}) {{"
    ));
    let (max, exps) = row_statistics(writer, logits, &row);
    let label = label_index(writer, labels, &row, logits.static_dim(1));
    let classes = writer.index(logits.static_dim(1));
    let k = writer.fresh("k");
    writer.open(&format!("scf.for {k} = {zero} to {classes} step {one} {{"));
    let value = load(writer, logits, &[&row, &k]);
    let shifted = writer.assign("v", &format!("arith.subf {value}, {max} : f32"));
    let exp = writer.assign("v", &format!("math.exp {shifted} : f32"));
    let probability = writer.assign("v", &format!("arith.divf {exp}, {exps} : f32"));
    let is_label = writer.assign("p", &format!("arith.cmpi eq, {k}, {label} : index"));
    let unit = writer.f32(1.0);
    let none = writer.f32(0.0);
    let target = writer.assign(
        "v",
        &format!("arith.select {is_label}, {unit}, {none} : f32"),
    );
    let difference = writer.assign("v", &format!("arith.subf {probability}, {target} : f32"));
    let gradient = writer.assign("v", &format!("arith.divf {difference}, {count} : f32"));
    writer.line(&format!(
        "memref.store {gradient}, {}[{row}, {k}] : {}",
        out.name,
        out.ty()
    ));
    writer.close("}");
    writer.line("scf.reduce");
    writer.close("}");
}

// correct = #{n : argmax_k l[n, k] = yₙ}, the first maximum on ties.
fn correct_count(writer: &mut FunctionWriter, logits: &Buffer, labels: &Buffer, out: &Buffer) {
    let batch = batch_size(writer, logits);
    let zero = writer.f32(0.0);
    let (row, count, total) = open_sum(writer, &batch, &zero);
    let first_index = writer.index(0);
    let one = writer.index(1);
    let classes = writer.index(logits.static_dim(1));
    let first = load(writer, logits, &[&row, &first_index]);
    let (k, best, best_index, result) = (
        writer.fresh("k"),
        writer.fresh("m"),
        writer.fresh("j"),
        writer.fresh("r"),
    );
    writer.open(&format!(
        "{result}:2 = scf.for {k} = {one} to {classes} step {one} iter_args({best} = {first}, \
         {best_index} = {first_index}) -> (f32, index) {{"
    ));
    let value = load(writer, logits, &[&row, &k]);
    let greater = writer.assign("p", &format!("arith.cmpf ogt, {value}, {best} : f32"));
    let next = writer.assign(
        "v",
        &format!("arith.select {greater}, {value}, {best} : f32"),
    );
    let next_index = writer.assign(
        "j",
        &format!("arith.select {greater}, {k}, {best_index} : index"),
    );
    writer.line(&format!("scf.yield {next}, {next_index} : f32, index"));
    writer.close("}");
    let label = label_index(writer, labels, &row, logits.static_dim(1));
    let hit = writer.assign("p", &format!("arith.cmpi eq, {result}#1, {label} : index"));
    let unit = writer.f32(1.0);
    let increment = writer.assign("v", &format!("arith.select {hit}, {unit}, {zero} : f32"));
    let next = writer.assign("v", &format!("arith.addf {count}, {increment} : f32"));
    close_sum(writer, &next);
    writer.line(&format!(
        "memref.store {total}, {}[] : {}",
        out.name,
        out.ty()
    ));
}
