//! Element-wise kernels: a fused group of element-wise ops as one `linalg.generic` over the
//! group's type, with per-channel coefficients computed first where an op has them.
//!
//! The iteration space is the group's type with the spatial axes collapsed: `[N, C, H·W]` for
//! a batched `[N, C, H, W]` (so per-channel operands index axis 1), `[N, K]` for `[N, K]`, the
//! flattened `[P]` for an unbatched tensor. Each operand outside the group is read through the
//! broadcast its type implies ([`Broadcast`]); a result written over a dying operand (the
//! buffer plan's in-place reuse) reads that operand through its output block argument, so the
//! generic never reads and writes two different memrefs that alias.
//!
//! BatchNorm applies and input gradients are affine per channel; their coefficients are
//! computed once per channel by a small generic over `[C]` (as PyTorch's CPU kernels do),
//! instead of once per element.

use std::collections::BTreeMap;

use crate::ir::{Activation, NodeId, Op, TensorType};
use crate::schedule::{broadcast_of, Access, Broadcast, Value};

use super::generic::{
    alloc, batch_size, collapse, dealloc, identity_map, Buffer, Dim, Generic, GenericOperand,
};
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

/// Per-channel coefficients of one BatchNorm-like node, computed by the prologue.
struct Coefficients {
    /// The prologue's output buffers, one per coefficient.
    buffers: Vec<Buffer>,
}

/// Emits the fused element-wise kernel.
pub(crate) fn emit(emit: &mut Emit<'_>) -> Result<(), MlirError> {
    let first = emit.kernel.nodes[0];
    let space_ty = emit.graph.node(first).ty.clone();
    let groups = space_groups(&space_ty);
    let rank = groups.len();

    // Operands and results as buffers over the iteration space.
    let mut generic = Generic {
        iterators: vec!["parallel"; rank],
        ..Generic::default()
    };
    let mut sources: BTreeMap<NodeId, Source> = BTreeMap::new();
    let mut outputs: Vec<NodeId> = Vec::new();
    let mut in_place: BTreeMap<usize, usize> = BTreeMap::new();
    let writes = emit
        .kernel
        .args
        .iter()
        .enumerate()
        .filter(|(_, arg)| arg.access != Access::Read);
    for (output, (index, _)) in writes.enumerate() {
        if let Some(read) = emit.same_slot_as.get(index).copied().flatten() {
            in_place.insert(read, output);
        }
    }
    let body_reads = values_read_in_body(emit);
    for index in 0..emit.kernel.args.len() {
        let arg = emit.kernel.args[index];
        let value = match arg.value {
            Value::Node(value) => value,
            Value::DropoutSeed => continue,
            Value::Output(_) => return Err(MlirError::BadKernel { op: "elementwise" }),
        };
        match arg.access {
            Access::Read => {
                if let Some(&output) = in_place.get(&index) {
                    sources.insert(value, Source::Output(output));
                    continue;
                }
                if !body_reads.contains(&value) {
                    continue;
                }
                let operand = read_operand(emit, index, &space_ty, &groups, first)?;
                sources.insert(value, Source::Input(generic.ins.len()));
                generic.ins.push(operand);
            }
            Access::Write | Access::Update => {
                let buffer = collapse(&mut emit.writer, &emit.args[index], &groups);
                generic.outs.push(GenericOperand {
                    buffer,
                    map: identity_map(rank),
                });
                outputs.push(value);
            }
        }
    }

    // Per-channel coefficients, then the generic itself.
    let coefficients = prologue(emit, &space_ty, &mut generic)?;
    let site_keys = dropout_keys(emit)?;
    let space = space_sizes(&space_ty, &groups);
    let nodes = emit.kernel.nodes.clone();
    let input_count = generic.ins.len();
    let mut writer = std::mem::take(&mut emit.writer);
    let shared: &Emit<'_> = emit;
    let result = generic.write(&mut writer, |writer, block| {
        let mut values: BTreeMap<NodeId, String> = BTreeMap::new();
        for (&value, source) in &sources {
            let name = match source {
                Source::Input(index) => block[*index].clone(),
                Source::Output(index) => block[input_count + index].clone(),
            };
            values.insert(value, name);
        }
        let mut body = BodyContext {
            writer,
            site_keys: &site_keys,
            space: &space,
            values,
            coefficients: &coefficients,
            block,
        };
        for &node in &nodes {
            let value = body.node(shared, node)?;
            body.values.insert(node, value);
        }
        outputs
            .iter()
            .map(|id| {
                body.values
                    .get(id)
                    .cloned()
                    .ok_or(MlirError::BadKernel { op: "elementwise" })
            })
            .collect()
    });
    emit.writer = writer;
    result?;
    for buffers in coefficients.values() {
        for buffer in &buffers.1.buffers {
            dealloc(&mut emit.writer, buffer);
        }
    }
    Ok(())
}

/// The key of every dropout site the group draws a mask for.
fn dropout_keys(emit: &mut Emit<'_>) -> Result<BTreeMap<u32, String>, MlirError> {
    let mut sites = Vec::new();
    for &node in &emit.kernel.nodes {
        match emit.graph.node(node).op {
            Op::Dropout { .. } if emit.mode == GraphMode::Train => sites.push(node_site(node)),
            Op::DropoutGrad { site, .. } => sites.push(site),
            _ => {}
        }
    }
    let mut keys = BTreeMap::new();
    if sites.is_empty() {
        return Ok(keys);
    }
    let seed = load_seed(emit)?.ok_or(MlirError::BadKernel { op: "dropout" })?;
    for site in sites {
        let key = site_key(&mut emit.writer, &seed, site);
        keys.insert(site, key);
    }
    Ok(keys)
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

/// Operand slots of `op` that only its per-channel prologue reads.
fn prologue_slots(op: &Op) -> &'static [usize] {
    match op {
        Op::BatchNormApply { .. } | Op::BatchNorm { .. } => &[1, 2, 3, 4],
        Op::BatchNormInputGrad { .. } => &[3, 4, 5, 6],
        _ => &[],
    }
}

/// The values the main generic's body reads (operands not consumed only by a prologue).
fn values_read_in_body(emit: &Emit<'_>) -> std::collections::BTreeSet<NodeId> {
    let mut read = std::collections::BTreeSet::new();
    for &node in &emit.kernel.nodes {
        let skip = prologue_slots(&emit.graph.node(node).op);
        for (slot, operand) in emit.graph.inputs(node).into_iter().enumerate() {
            if !skip.contains(&slot) {
                read.insert(operand);
            }
        }
    }
    read
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
    first: NodeId,
) -> Result<GenericOperand, MlirError> {
    let operand_ty = &emit.types[index];
    let broadcast = broadcast_of(operand_ty, space).ok_or_else(|| {
        let (op, span) = emit.describe(first);
        MlirError::UnsupportedBroadcast {
            op,
            operand: operand_ty.clone(),
            space: space.clone(),
            span,
        }
    })?;
    let rank = groups.len();
    let (buffer, map) = match broadcast {
        Broadcast::Full => (
            collapse(&mut emit.writer, &emit.args[index], groups),
            identity_map(rank),
        ),
        Broadcast::Channel => (emit.args[index].clone(), "d1".to_string()),
        Broadcast::Single => (emit.args[index].clone(), "0".to_string()),
        Broadcast::Scalar => (emit.args[index].clone(), String::new()),
        Broadcast::BatchChannel => (emit.args[index].clone(), "d0, d1".to_string()),
    };
    Ok(GenericOperand { buffer, map })
}

/// Computes the per-channel coefficients of every BatchNorm-like node of the group and adds
/// them to the generic's inputs; returns, per node, the index of its first coefficient input
/// and the buffers.
fn prologue(
    emit: &mut Emit<'_>,
    space: &TensorType,
    generic: &mut Generic,
) -> Result<BTreeMap<NodeId, (usize, Coefficients)>, MlirError> {
    let mut result = BTreeMap::new();
    let nodes = emit.kernel.nodes.clone();
    for node in nodes {
        let op = emit.graph.node(node).op.clone();
        let inputs = emit.graph.inputs(node);
        let (channel_slots, count): (&[usize], usize) = match op {
            Op::BatchNormApply { .. } => (&[1, 2, 3, 4], 2),
            Op::BatchNorm { .. } => (&[1, 2, 3, 4], 2),
            Op::BatchNormInputGrad { .. } => (&[2, 3, 4, 5, 6], 3),
            _ => continue,
        };
        let channels = match (space.batched, space.dims.first()) {
            (true, Some(&channels)) => channels,
            _ => {
                let (op, span) = emit.describe(node);
                let reason = "BatchNorm needs a batched tensor with a channel axis";
                return Err(MlirError::UnsupportedShape {
                    op,
                    ty: space.clone(),
                    reason,
                    span,
                });
            }
        };
        emit.locate(node);
        let mut per_channel = Generic {
            iterators: vec!["parallel"],
            ..Generic::default()
        };
        for &slot in channel_slots {
            let index = inputs.get(slot).and_then(|&id| emit.arg_of(id));
            let index = index.ok_or(MlirError::BadKernel { op: op.name() })?;
            let map = if emit.types[index].dims == [1] && channels != 1 {
                "0"
            } else {
                "d0"
            };
            per_channel.ins.push(GenericOperand {
                buffer: emit.args[index].clone(),
                map: map.into(),
            });
        }
        let mut buffers = Vec::with_capacity(count);
        for _ in 0..count {
            let buffer = alloc(&mut emit.writer, vec![Dim::Static(channels)], space.dtype);
            per_channel.outs.push(GenericOperand {
                buffer: buffer.clone(),
                map: "d0".into(),
            });
            buffers.push(buffer);
        }
        let elements = match &op {
            Op::BatchNormInputGrad { .. } => Some(batch_elements(emit, space, channels)?),
            _ => None,
        };
        per_channel.write(&mut emit.writer, |writer, block| {
            Ok(coefficients(writer, &op, block, elements.as_deref()))
        })?;
        let first_input = generic.ins.len();
        for buffer in &buffers {
            generic.ins.push(GenericOperand {
                buffer: buffer.clone(),
                map: "d1".to_string(),
            });
        }
        result.insert(node, (first_input, Coefficients { buffers }));
    }
    Ok(result)
}

/// `M = N·(H·W)` as an `f32`, the number of elements per channel in the batch.
fn batch_elements(
    emit: &mut Emit<'_>,
    space: &TensorType,
    channels: usize,
) -> Result<String, MlirError> {
    let full = emit
        .kernel
        .args
        .iter()
        .position(|arg| matches!(arg.value, Value::Node(id) if emit.graph.node(id).ty == *space))
        .ok_or(MlirError::BadKernel {
            op: "batchnorm_input_grad",
        })?;
    let buffer = emit.args[full].clone();
    let batch = batch_size(&mut emit.writer, &buffer);
    let per_item = emit.writer.index(space.item_elements() / channels.max(1));
    let count = emit
        .writer
        .assign("m", &format!("arith.muli {batch}, {per_item} : index"));
    let count = emit
        .writer
        .assign("m", &format!("arith.index_cast {count} : index to i64"));
    Ok(emit
        .writer
        .assign("m", &format!("arith.sitofp {count} : i64 to f32")))
}

/// The per-channel coefficients of `op` from its channel operands (in slot order).
fn coefficients(
    writer: &mut FunctionWriter,
    op: &Op,
    block: &[String],
    elements: Option<&str>,
) -> Vec<String> {
    let one = writer.f32(1.0);
    match op {
        // invstd = 1/sqrt(var + eps); alpha = invstd·γ; beta = β − mean·alpha.
        Op::BatchNormApply { eps } | Op::BatchNorm { eps, .. } => {
            let (mean, var, scale, shift) = match op {
                Op::BatchNormApply { .. } => (&block[0], &block[1], &block[2], &block[3]),
                _ => (&block[2], &block[3], &block[0], &block[1]),
            };
            let eps = writer.f32(*eps);
            let shifted = binary(writer, "addf", var, &eps);
            let root = super::scalar::math(writer, "sqrt", &shifted);
            let invstd = binary(writer, "divf", &one, &root);
            let alpha = binary(writer, "mulf", &invstd, scale);
            let product = binary(writer, "mulf", mean, &alpha);
            let beta = binary(writer, "subf", shift, &product);
            vec![alpha, beta]
        }
        // dx = k·dy − k·invstd·dscale/M·(x − mean) − k·dshift/M, k = γ·invstd.
        _ => {
            let (var, scale, dscale, dshift) = (&block[1], &block[2], &block[3], &block[4]);
            let eps = match op {
                Op::BatchNormInputGrad { eps } => *eps,
                _ => 0.0,
            };
            let eps = writer.f32(eps);
            let elements = elements.map_or_else(|| one.clone(), str::to_string);
            let shifted = binary(writer, "addf", var, &eps);
            let root = super::scalar::math(writer, "sqrt", &shifted);
            let invstd = binary(writer, "divf", &one, &root);
            let k = binary(writer, "mulf", scale, &invstd);
            let k_invstd = binary(writer, "mulf", &k, &invstd);
            let scaled = binary(writer, "mulf", &k_invstd, dscale);
            let slope = binary(writer, "divf", &scaled, &elements);
            let shift_term = binary(writer, "mulf", &k, dshift);
            let offset = binary(writer, "divf", &shift_term, &elements);
            vec![k, slope, offset]
        }
    }
}

/// The scalar computation of the group's nodes inside the main generic.
struct BodyContext<'w, 'c> {
    writer: &'w mut FunctionWriter,
    /// Key of each dropout site of the group, computed before the generic.
    site_keys: &'c BTreeMap<u32, String>,
    /// Static sizes of the iteration space (the batch as 1, never used as a multiplier).
    space: &'c [usize],
    values: BTreeMap<NodeId, String>,
    coefficients: &'c BTreeMap<NodeId, (usize, Coefficients)>,
    block: &'c [String],
}

impl BodyContext<'_, '_> {
    fn coefficient(&self, node: NodeId, which: usize) -> Result<String, MlirError> {
        let (first, _) = self
            .coefficients
            .get(&node)
            .ok_or(MlirError::BadKernel { op: "batchnorm" })?;
        Ok(self.block[first + which].clone())
    }

    /// The value of `node` from its operands' values.
    fn node(&mut self, emit: &Emit<'_>, node: NodeId) -> Result<String, MlirError> {
        let inputs = emit.graph.inputs(node);
        let op = emit.graph.node(node).op.clone();
        let location = self.writer.location().to_string();
        self.writer.set_location(emit_location(emit, node));
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

fn emit_location(emit: &Emit<'_>, node: NodeId) -> String {
    match emit.source {
        Some(file) => {
            let (line, column) = file.line_column(emit.graph.node(node).span.start);
            super::writer::location_text(&file.name, line, column)
        }
        None => String::new(),
    }
}

/// The dropout site of a forward `Dropout` node: its node index (as autodiff records it in
/// the matching `DropoutGrad`).
fn node_site(node: NodeId) -> u32 {
    node.index() as u32
}

/// splitmix64's finaliser on an `i64` value (see `reference::dropout`).
fn mix64(writer: &mut FunctionWriter, word: &str) -> String {
    let mut z = word.to_string();
    for (shift, multiplier) in [
        (30, Some(0xBF58_476D_1CE4_E5B9u64)),
        (27, Some(0x94D0_49BB_1331_11EB)),
        (31, None),
    ] {
        let amount = writer.i64(shift);
        let shifted = writer.assign("h", &format!("arith.shrui {z}, {amount} : i64"));
        z = writer.assign("h", &format!("arith.xori {z}, {shifted} : i64"));
        if let Some(multiplier) = multiplier {
            let multiplier = writer.i64(multiplier);
            z = writer.assign("h", &format!("arith.muli {z}, {multiplier} : i64"));
        }
    }
    z
}

/// The step's dropout seed as an `i64`, read from the `dropout_seed` argument.
fn load_seed(emit: &mut Emit<'_>) -> Result<Option<String>, MlirError> {
    let Some(index) = emit
        .kernel
        .args
        .iter()
        .position(|arg| arg.value == Value::DropoutSeed)
    else {
        return Ok(None);
    };
    let seed = emit.args[index].clone();
    let words: Vec<String> = (0..2)
        .map(|word| {
            let position = emit.writer.index(word);
            let value = emit.writer.assign(
                "s",
                &format!("memref.load {}[{position}] : {}", seed.name, seed.ty()),
            );
            emit.writer
                .assign("s", &format!("arith.extui {value} : i32 to i64"))
        })
        .collect();
    let thirty_two = emit.writer.i64(32);
    let high = emit
        .writer
        .assign("s", &format!("arith.shli {}, {thirty_two} : i64", words[1]));
    Ok(Some(emit.writer.assign(
        "s",
        &format!("arith.ori {high}, {} : i64", words[0]),
    )))
}

/// The key of dropout site `site`: `mix64(seed + (site + 1)·G)`.
fn site_key(writer: &mut FunctionWriter, seed: &str, site: u32) -> String {
    let offset = (u64::from(site) + 1).wrapping_mul(GAMMA);
    let offset = writer.i64(offset);
    let word = writer.assign("h", &format!("arith.addi {seed}, {offset} : i64"));
    mix64(writer, &word)
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

// y = keep(seed, site, flat index, p) ? x/(1 − p)·… : 0, with
// keep = (mix64(site_key + (index + 1)·G) >> 40) ≥ p·2²⁴
fn dropout(writer: &mut FunctionWriter, key: &str, space: &[usize], x: &str, p: f32) -> String {
    let mut flat: Option<String> = None;
    for (dim, &size) in space.iter().enumerate() {
        let index = writer.assign("i", &format!("linalg.index {dim} : index"));
        flat = Some(match flat {
            None => index,
            Some(outer) => {
                let size = writer.index(size);
                let scaled = writer.assign("i", &format!("arith.muli {outer}, {size} : index"));
                writer.assign("i", &format!("arith.addi {scaled}, {index} : index"))
            }
        });
    }
    let flat = flat.unwrap_or_else(|| writer.index(0));
    let flat = writer.assign("h", &format!("arith.index_cast {flat} : index to i64"));
    let one = writer.i64(1);
    let gamma = writer.i64(GAMMA);
    let counter = writer.assign("h", &format!("arith.addi {flat}, {one} : i64"));
    let step = writer.assign("h", &format!("arith.muli {counter}, {gamma} : i64"));
    let word = writer.assign("h", &format!("arith.addi {key}, {step} : i64"));
    let mixed = mix64(writer, &word);
    let forty = writer.i64(40);
    let bits = writer.assign("h", &format!("arith.shrui {mixed}, {forty} : i64"));
    let bits = writer.assign("v", &format!("arith.uitofp {bits} : i64 to f32"));
    let threshold = writer.f32(p * 16_777_216.0);
    let keep = writer.assign("p", &format!("arith.cmpf oge, {bits}, {threshold} : f32"));
    let scale = writer.f32(1.0 / (1.0 - p));
    let scaled = binary(writer, "mulf", x, &scale);
    let zero = writer.f32(0.0);
    writer.assign("v", &format!("arith.select {keep}, {scaled}, {zero} : f32"))
}
