//! Element-wise kernels: a fused group of element-wise ops as one `linalg.generic` over the
//! group's type, after the per-channel coefficients of its BatchNorm ops ([`batchnorm`]) and
//! the keys of its dropout masks ([`dropout`]).
//!
//! The iteration space is the group's type with the spatial axes collapsed: `[N, C, H·W]` for
//! a batched `[N, C, H, W]` (so per-channel operands index axis 1), `[N, K]` for `[N, K]`, the
//! flattened `[P]` for an unbatched tensor. Each operand outside the group is read through the
//! broadcast its type implies ([`Broadcast`]); a result written over a dying operand (the
//! buffer plan's in-place reuse) reads that operand through its output block argument, so the
//! generic never reads and writes two different memrefs that alias.

use std::collections::{BTreeMap, BTreeSet};

use crate::ir::{Activation, NodeId, Op, TensorType};
use crate::schedule::{broadcast_of, Access, Broadcast, Value};

use super::batchnorm::{self, Coefficients};
use super::dropout::{self, dropout, node_site};
use super::generic::{collapse, identity_map, Generic, GenericOperand};
use super::scalar::{activation, activation_grad, binary};
use super::writer::FunctionWriter;
use super::{Emit, GraphMode, MlirError};

/// Where a scalar inside the main generic comes from.
#[derive(Clone, Debug)]
enum Source {
    /// Block argument number `index` of the main generic's inputs.
    Input(usize),
    /// An output's block argument (an operand updated in place).
    Output(usize),
}

/// The main generic's operands and what each block argument holds.
struct Binding {
    generic: Generic,
    sources: BTreeMap<NodeId, Source>,
    outputs: Vec<NodeId>,
}

/// Emits the fused element-wise kernel.
pub(crate) fn emit(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    let first = emit.kernel.nodes[0];
    let space_ty = emit.graph.node(first).ty.clone();
    let groups = space_groups(&space_ty);

    // Operands and results as buffers over the iteration space.
    let mut binding = bind(emit, &space_ty, &groups)?;

    // Per-channel coefficients and dropout keys, computed before the generic.
    let coefficients = batchnorm::prologue(emit, &space_ty, &mut binding.generic)?;
    let site_keys = dropout::site_keys(emit)?;

    // The generic: every node of the group, in order, on scalars.
    let space = space_sizes(&space_ty, &groups);
    let mut writer = std::mem::take(&mut emit.writer);
    let result = binding.generic.write(&mut writer, |writer, block| {
        let inputs = binding.generic.ins.len();
        let values = binding
            .sources
            .iter()
            .map(|(&value, source)| match source {
                Source::Input(index) => (value, block[*index].clone()),
                Source::Output(index) => (value, block[inputs + index].clone()),
            })
            .collect();
        let mut body = BodyContext {
            writer,
            site_keys: &site_keys,
            space: &space,
            values,
            coefficients: &coefficients,
            block,
        };
        for &node in &emit.kernel.nodes {
            let value = body.node(emit, node)?;
            body.values.insert(node, value);
        }
        let missing = || MlirError::BadKernel { op: "elementwise" };
        let yields = binding
            .outputs
            .iter()
            .map(|id| body.values.get(id).cloned().ok_or_else(missing));
        yields.collect()
    });
    emit.writer = writer;
    result?;
    batchnorm::free(emit, &coefficients);
    Ok(())
}

/// Binds every kernel argument to the main generic: operands the body reads as inputs (or,
/// when updated in place, as their output's block argument), results as outputs.
fn bind(emit: &mut Emit<'_>, space: &TensorType, groups: &[usize]) -> Result<Binding, MlirError> {
    let rank = groups.len();
    let mut binding = Binding {
        generic: Generic {
            iterators: vec!["parallel"; rank],
            ..Generic::default()
        },
        sources: BTreeMap::new(),
        outputs: Vec::new(),
    };
    let in_place = in_place_reads(emit);
    let body_reads = values_read_in_body(emit);
    for index in 0..emit.kernel.args.len() {
        let arg = emit.kernel.args[index];
        let value = match arg.value {
            Value::Node(value) => value,
            // Read by the BatchNorm prologue and the dropout keys.
            Value::DropoutSeed | Value::Temporary(_) => continue,
            Value::Output(_) => return Err(MlirError::BadKernel { op: "elementwise" }),
        };
        if arg.access != Access::Read {
            let buffer = collapse(&mut emit.writer, &emit.args[index], groups);
            binding.generic.outs.push(GenericOperand {
                buffer,
                map: identity_map(rank),
            });
            binding.outputs.push(value);
        } else if let Some(&output) = in_place.get(&index) {
            binding.sources.insert(value, Source::Output(output));
        } else if body_reads.contains(&value) {
            let operand = read_operand(emit, index, space, groups)?;
            binding
                .sources
                .insert(value, Source::Input(binding.generic.ins.len()));
            binding.generic.ins.push(operand);
        }
    }
    Ok(binding)
}

/// For each operand argument overwritten in place by a result, that result's output index.
fn in_place_reads(emit: &Emit<'_>) -> BTreeMap<usize, usize> {
    let args = emit.kernel.args.iter().enumerate();
    let writes = args.filter(|(_, arg)| arg.access != Access::Read);
    let mut reads = BTreeMap::new();
    for (output, (index, _)) in writes.enumerate() {
        if let Some(read) = emit.same_slot_as.get(index).copied().flatten() {
            reads.insert(read, output);
        }
    }
    reads
}

/// The values the main generic's body reads (operands not consumed only by a prologue).
fn values_read_in_body(emit: &Emit<'_>) -> BTreeSet<NodeId> {
    let mut read = BTreeSet::new();
    for &node in &emit.kernel.nodes {
        let skip = batchnorm::prologue_slots(&emit.graph.node(node).op);
        for (slot, operand) in emit.graph.inputs(node).into_iter().enumerate() {
            if !skip.contains(&slot) {
                read.insert(operand);
            }
        }
    }
    read
}

/// The static size of each loop of the iteration space (1 for the batch).
fn space_sizes(ty: &TensorType, groups: &[usize]) -> Vec<usize> {
    let mut dims: Vec<usize> = Vec::new();
    if ty.batched {
        dims.push(1);
    }
    dims.extend(&ty.dims);
    let mut sizes = Vec::with_capacity(groups.len());
    let mut next = 0;
    for &count in groups {
        sizes.push(dims[next..next + count].iter().product());
        next += count;
    }
    sizes
}

/// How many dimensions of the group's type each loop covers.
fn space_groups(ty: &TensorType) -> Vec<usize> {
    match (ty.batched, ty.dims.len()) {
        (true, 0) => vec![1],
        (true, 1) => vec![1, 1],
        (true, rank) => vec![1, 1, rank - 1],
        (false, 0) => Vec::new(),
        (false, rank) => vec![rank],
    }
}

/// The generic operand reading argument `index` over the iteration space.
fn read_operand(
    emit: &mut Emit<'_>,
    index: usize,
    space: &TensorType,
    groups: &[usize],
) -> Result<GenericOperand, MlirError> {
    let operand_ty = &emit.types[index];
    let broadcast = broadcast_of(operand_ty, space).ok_or_else(|| {
        let (op, span) = emit.describe(emit.kernel.nodes[0]);
        let (operand, space) = (operand_ty.clone(), space.clone());
        MlirError::UnsupportedBroadcast {
            op,
            operand,
            space,
            span,
        }
    })?;
    let buffer = emit.args[index].clone();
    let (buffer, map) = match broadcast {
        Broadcast::Full => (
            collapse(&mut emit.writer, &buffer, groups),
            identity_map(groups.len()),
        ),
        Broadcast::Channel => (buffer, "d1".to_string()),
        Broadcast::Single => (buffer, "0".to_string()),
        Broadcast::Scalar => (buffer, String::new()),
        Broadcast::BatchChannel => (buffer, "d0, d1".to_string()),
    };
    Ok(GenericOperand { buffer, map })
}

/// The scalar computation of the group's nodes inside the main generic.
struct BodyContext<'w, 'c> {
    writer: &'w mut FunctionWriter,
    /// Key of each dropout site of the group, computed before the generic.
    site_keys: &'c BTreeMap<u32, String>,
    /// Static sizes of the iteration space (the batch as 1, never used as a multiplier).
    space: &'c [usize],
    values: BTreeMap<NodeId, String>,
    coefficients: &'c BTreeMap<NodeId, Coefficients>,
    block: &'c [String],
}

impl BodyContext<'_, '_> {
    fn coefficient(&self, node: NodeId, which: usize) -> Result<String, MlirError> {
        let node = self.coefficients.get(&node);
        let node = node.ok_or(MlirError::BadKernel { op: "batchnorm" })?;
        Ok(self.block[node.first_input + which].clone())
    }

    /// The value of `node` from its operands' values.
    fn node(&mut self, emit: &Emit<'_>, node: NodeId) -> Result<String, MlirError> {
        let inputs = emit.graph.inputs(node);
        let op = emit.graph.node(node).op.clone();
        let location = self.writer.location().to_string();
        self.writer.set_location(emit.location_of(node));
        let values: Vec<Option<String>> = inputs
            .iter()
            .map(|id| self.values.get(id).cloned())
            .collect();
        let operand = |slot: usize| {
            values
                .get(slot)
                .cloned()
                .flatten()
                .ok_or(MlirError::BadKernel { op: op.name() })
        };
        let value = match &op {
            Op::Activation(kind) => {
                let x = operand(0)?;
                let slope = if *kind == Activation::Prelu {
                    Some(operand(1)?)
                } else {
                    None
                };
                activation(self.writer, kind, &x, slope.as_deref())
            }
            Op::ActivationGrad(kind) => {
                let (dy, x) = (operand(0)?, operand(1)?);
                let slope = if *kind == Activation::Prelu {
                    Some(operand(2)?)
                } else {
                    None
                };
                activation_grad(self.writer, kind, &dy, &x, slope.as_deref())
            }
            Op::Mix { weights } => {
                let mut sum: Option<String> = None;
                for (slot, weight) in weights.iter().enumerate() {
                    let weight = self.writer.f32(*weight);
                    let term = binary(self.writer, "mulf", &weight, &operand(slot)?);
                    sum = Some(match sum {
                        Some(sum) => binary(self.writer, "addf", &sum, &term),
                        None => term,
                    });
                }
                sum.ok_or(MlirError::BadKernel { op: "mix" })?
            }
            Op::Add => {
                let mut sum = operand(0)?;
                for slot in 1..inputs.len() {
                    sum = binary(self.writer, "addf", &sum, &operand(slot)?);
                }
                sum
            }
            Op::Scale { factor } => {
                let factor = self.writer.f32(*factor);
                binary(self.writer, "mulf", &factor, &operand(0)?)
            }
            Op::BatchNormApply { .. } | Op::BatchNorm { .. } => {
                let (alpha, beta) = (self.coefficient(node, 0)?, self.coefficient(node, 1)?);
                let scaled = binary(self.writer, "mulf", &operand(0)?, &alpha);
                binary(self.writer, "addf", &scaled, &beta)
            }
            Op::BatchNormInputGrad { .. } => {
                let (k, slope, offset) = (
                    self.coefficient(node, 0)?,
                    self.coefficient(node, 1)?,
                    self.coefficient(node, 2)?,
                );
                let (dy, x, mean) = (operand(0)?, operand(1)?, operand(2)?);
                let centered = binary(self.writer, "subf", &x, &mean);
                let direct = binary(self.writer, "mulf", &k, &dy);
                let tilt = binary(self.writer, "mulf", &slope, &centered);
                let partial = binary(self.writer, "subf", &direct, &tilt);
                binary(self.writer, "subf", &partial, &offset)
            }
            Op::GlobalAvgPoolGrad => {
                let ty = &emit.graph.node(node).ty;
                let area = ty.item_elements() / ty.dims.first().copied().unwrap_or(1).max(1);
                let area = self.writer.f32(area as f32);
                binary(self.writer, "divf", &operand(0)?, &area)
            }
            Op::Dropout { p } => match emit.mode {
                GraphMode::Eval => operand(0)?,
                GraphMode::Train => {
                    let key = self
                        .site_keys
                        .get(&node_site(node))
                        .ok_or(MlirError::BadKernel { op: "dropout" })?;
                    dropout(self.writer, key, self.space, &operand(0)?, *p)
                }
            },
            Op::DropoutGrad { p, site } => {
                let key = self
                    .site_keys
                    .get(site)
                    .ok_or(MlirError::BadKernel { op: "dropout_grad" })?;
                dropout(self.writer, key, self.space, &operand(0)?, *p)
            }
            _ => return Err(MlirError::BadKernel { op: op.name() }),
        };
        self.writer.set_location(location);
        Ok(value)
    }
}
