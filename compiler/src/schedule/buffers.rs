//! The buffer plan: which storage holds each value the kernels touch, and where temporaries lie
//! in one arena sized for the largest batch.
//!
//! Rules: parameters, running statistics and momentum buffers are persistent slots named after
//! the parameter; inputs, labels and scalars are feeds named after themselves; graph outputs
//! computed by a kernel are output slots named after the output; views and effects share the
//! slot of the value under them; every other value (and every partial-sums temporary of a
//! split reduction) is an arena temporary. An element-wise
//! kernel may write a result over an operand of the same type that dies in that kernel (the
//! generic reads each element before writing it). Arena offsets come from a greedy placement,
//! largest first, at the lowest aligned offset free during the slot's whole lifetime.
//!
//! Invariant: two arena slots whose lifetimes (first write to last access, in kernel order)
//! intersect never share a byte.

use std::collections::BTreeMap;

use runtime::program::{Storage, ARENA_ALIGN};

use crate::ir::{DType, NodeId, Op, TensorType};

use super::classify::OpClass;
use super::fuse::LiveGraph;
use super::kernel::{storage_root, Access, Kernel, KernelKind, Value};

/// Name of the feed holding the step's dropout seed (`i32[2]`: low, then high 32 bits).
pub const DROPOUT_SEED: &str = "dropout_seed";

/// One storage slot of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    /// Name: the parameter, feed or output name; for temporaries `<op>.<node index>`.
    pub name: String,
    /// The type of the value stored (views of it reshape it inside kernels).
    pub ty: TensorType,
    /// Who owns the bytes.
    pub storage: Storage,
    /// First and last kernel (positions in the schedule) that touch it.
    pub lifetime: (usize, usize),
}

impl Slot {
    /// Bytes at batch size `batch`.
    pub fn bytes(&self, batch: usize) -> usize {
        let item = self.ty.item_elements() * program_dtype(self.ty.dtype).size_bytes();
        if self.ty.batched {
            item * batch
        } else {
            item
        }
    }
}

/// The plan for one schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferPlan {
    /// The slots, in order of first use.
    pub slots: Vec<Slot>,
    /// The slot of every value a kernel argument is bound to.
    pub slot_of: BTreeMap<Value, usize>,
    /// Batch size the arena is planned for.
    pub max_batch: usize,
    /// Arena size in bytes (a multiple of [`ARENA_ALIGN`]).
    pub arena_bytes: usize,
    /// Sum of the arena temporaries' sizes, as if none were reused.
    pub unshared_bytes: usize,
}

impl BufferPlan {
    /// Bytes held by slots with the given kind of storage (arena slots count once, as the
    /// arena).
    pub fn bytes_of(&self, keep: impl Fn(&Storage) -> bool) -> usize {
        self.slots
            .iter()
            .filter(|slot| keep(&slot.storage))
            .map(|slot| slot.bytes(self.max_batch))
            .sum()
    }

    /// Peak memory of one call at `max_batch`: the arena, plus persistent, feed and output
    /// tensors.
    pub fn peak_bytes(&self) -> usize {
        self.arena_bytes + self.bytes_of(|storage| !matches!(storage, Storage::Arena { .. }))
    }
}

/// Plans the storage of every value the `kernels` (in run order) touch.
pub(crate) fn plan_buffers(
    live: &LiveGraph,
    kernels: &[Kernel],
    temporaries: &[TensorType],
    max_batch: usize,
) -> BufferPlan {
    let last_use = last_uses(live, kernels);
    let output_names = output_slot_names(live);
    let mut planner = Planner {
        slots: Vec::new(),
        slot_of: BTreeMap::new(),
        holder: Vec::new(),
    };
    let mut slot_of_root: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (position, kernel) in kernels.iter().enumerate() {
        for (arg_index, arg) in kernel.args.iter().enumerate() {
            let slot = match arg.value {
                Value::Node(id) => {
                    let root = storage_root(live, id);
                    let slot = match slot_of_root.get(&root) {
                        Some(&slot) => slot,
                        None => {
                            let ty = &live.graph.node(root).ty;
                            let is_temporary = !output_names.contains_key(&root)
                                && !matches!(live.class(root), OpClass::Leaf);
                            let reused = is_temporary
                                .then(|| {
                                    planner.reusable(kernel, arg_index, ty, position, &last_use)
                                })
                                .flatten();
                            let slot = reused.unwrap_or_else(|| {
                                planner.push(new_slot(live, root, &output_names, position))
                            });
                            planner.holder[slot] = Some(root);
                            slot_of_root.insert(root, slot);
                            slot
                        }
                    };
                    planner.slot_of.insert(arg.value, slot);
                    slot
                }
                Value::Output(index) => planner.output_slot(live, index, position),
                Value::DropoutSeed => planner.seed_slot(position),
                Value::Temporary(index) => planner.temporary_slot(index, temporaries, position),
            };
            planner.slots[slot].lifetime.1 = position;
        }
    }
    let mut slots = planner.slots;
    let unshared_bytes = slots
        .iter()
        .filter(|slot| matches!(slot.storage, Storage::Arena { .. }))
        .map(|slot| aligned(slot.bytes(max_batch)))
        .sum();
    let arena_bytes = place_arena(&mut slots, max_batch);
    BufferPlan {
        slots,
        slot_of: planner.slot_of,
        max_batch,
        arena_bytes,
        unshared_bytes,
    }
}

/// The last kernel position touching each storage root.
fn last_uses(live: &LiveGraph, kernels: &[Kernel]) -> BTreeMap<NodeId, usize> {
    let mut last = BTreeMap::new();
    for (position, kernel) in kernels.iter().enumerate() {
        for arg in &kernel.args {
            if let Value::Node(id) = arg.value {
                last.insert(storage_root(live, id), position);
            }
        }
    }
    last
}

/// Slots under construction, with the root whose value each holds now.
struct Planner {
    slots: Vec<Slot>,
    slot_of: BTreeMap<Value, usize>,
    holder: Vec<Option<NodeId>>,
}

impl Planner {
    fn push(&mut self, slot: Slot) -> usize {
        self.slots.push(slot);
        self.holder.push(None);
        self.slots.len() - 1
    }

    fn output_slot(&mut self, live: &LiveGraph, index: usize, position: usize) -> usize {
        let value = Value::Output(index);
        if let Some(&slot) = self.slot_of.get(&value) {
            return slot;
        }
        let (name, id) = &live.graph.outputs()[index];
        let ty = live.graph.node(*id).ty.clone();
        let storage = Storage::Output;
        let slot = self.push(Slot {
            name: name.clone(),
            ty,
            storage,
            lifetime: (position, position),
        });
        self.slot_of.insert(value, slot);
        slot
    }

    fn temporary_slot(&mut self, index: usize, types: &[TensorType], position: usize) -> usize {
        let value = Value::Temporary(index);
        if let Some(&slot) = self.slot_of.get(&value) {
            return slot;
        }
        let ty = types.get(index).cloned().unwrap_or_else(TensorType::scalar);
        let storage = Storage::Arena { offset_bytes: 0 };
        let name = format!("temporary.{index}");
        let slot = self.push(Slot {
            name,
            ty,
            storage,
            lifetime: (position, position),
        });
        self.slot_of.insert(value, slot);
        slot
    }

    fn seed_slot(&mut self, position: usize) -> usize {
        if let Some(&slot) = self.slot_of.get(&Value::DropoutSeed) {
            return slot;
        }
        let ty = TensorType {
            dtype: DType::I32,
            batched: false,
            dims: vec![2],
        };
        let name = DROPOUT_SEED.to_string();
        let slot = self.push(Slot {
            name,
            ty,
            storage: Storage::Feed,
            lifetime: (position, position),
        });
        self.slot_of.insert(Value::DropoutSeed, slot);
        slot
    }

    /// For an element-wise kernel's result of type `ty`: the arena slot of an operand of the
    /// same type whose value dies in this kernel and that no earlier result took.
    fn reusable(
        &self,
        kernel: &Kernel,
        arg_index: usize,
        ty: &TensorType,
        position: usize,
        last_use: &BTreeMap<NodeId, usize>,
    ) -> Option<usize> {
        let arg = kernel.args[arg_index];
        if kernel.kind != KernelKind::Elementwise || arg.access != Access::Write {
            return None;
        }
        let taken: Vec<usize> = kernel.args[..arg_index]
            .iter()
            .filter(|other| other.access == Access::Write)
            .filter_map(|other| self.slot_of.get(&other.value).copied())
            .collect();
        kernel.args[..arg_index].iter().find_map(|operand| {
            let slot = *self.slot_of.get(&operand.value)?;
            let candidate = &self.slots[slot];
            let dies_here =
                self.holder[slot].and_then(|root| last_use.get(&root)) == Some(&position);
            let fits = operand.access == Access::Read
                && matches!(candidate.storage, Storage::Arena { .. })
                && candidate.ty == *ty
                && dies_here
                && !taken.contains(&slot);
            fits.then_some(slot)
        })
    }
}

fn new_slot(
    live: &LiveGraph,
    root: NodeId,
    output_names: &BTreeMap<NodeId, String>,
    position: usize,
) -> Slot {
    let node = live.graph.node(root);
    let (name, storage) = match &node.op {
        Op::Param { name, .. } => (name.clone(), Storage::Persistent),
        Op::Input { name } | Op::Labels { name } | Op::Scalar { name } => {
            (name.clone(), Storage::Feed)
        }
        op => match output_names.get(&root) {
            Some(name) => (name.clone(), Storage::Output),
            None => (
                format!("{}.{}", op.name(), live.number[root.index()]),
                Storage::Arena { offset_bytes: 0 },
            ),
        },
    };
    Slot {
        name,
        ty: node.ty.clone(),
        storage,
        lifetime: (position, position),
    }
}

/// The output name of each node that is stored directly as a graph output: the first output
/// naming a node computed by a kernel.
pub(crate) fn output_slot_names(live: &LiveGraph) -> BTreeMap<NodeId, String> {
    let mut names = BTreeMap::new();
    for (name, id) in live.graph.outputs() {
        if stored_as_output(live, *id) {
            names.entry(*id).or_insert_with(|| name.clone());
        }
    }
    names
}

/// True when a graph output naming `id` can be `id`'s own slot.
pub(crate) fn stored_as_output(live: &LiveGraph, id: NodeId) -> bool {
    !matches!(
        live.class(id),
        OpClass::Leaf | OpClass::View | OpClass::Effect
    )
}

fn aligned(bytes: usize) -> usize {
    bytes.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// Gives every arena slot an offset; returns the arena size.
fn place_arena(slots: &mut [Slot], max_batch: usize) -> usize {
    let mut arena: Vec<usize> = (0..slots.len())
        .filter(|&index| matches!(slots[index].storage, Storage::Arena { .. }))
        .collect();
    arena.sort_by_key(|&index| (std::cmp::Reverse(slots[index].bytes(max_batch)), index));
    let mut placed: Vec<(usize, usize, (usize, usize))> = Vec::new();
    let mut arena_bytes = 0;
    for index in arena {
        let size = aligned(slots[index].bytes(max_batch)).max(ARENA_ALIGN);
        let lifetime = slots[index].lifetime;
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|(_, _, other)| other.0 <= lifetime.1 && lifetime.0 <= other.1)
            .map(|&(offset, bytes, _)| (offset, offset + bytes))
            .collect();
        busy.sort_unstable();
        let mut offset = 0;
        for (start, end) in busy {
            if start >= offset + size {
                break;
            }
            offset = offset.max(end);
        }
        placed.push((offset, size, lifetime));
        arena_bytes = arena_bytes.max(offset + size);
        slots[index].storage = Storage::Arena {
            offset_bytes: offset,
        };
    }
    arena_bytes
}

/// The element type of a slot in the program's terms.
pub fn program_dtype(dtype: DType) -> runtime::program::DType {
    match dtype {
        DType::F32 => runtime::program::DType::F32,
        DType::I32 => runtime::program::DType::I32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, Graph, Init, ParamRole};
    use crate::schedule::{schedule, GraphMode, Schedule};
    use grammar::Span;

    /// A chain of `depth` convolutions with ReLUs, then a global pool.
    fn chain(depth: usize) -> Graph {
        let mut graph = Graph::new();
        let span = Span::default();
        let ty = TensorType::batch(vec![8, 16, 16]);
        let mut x = graph.add(
            Op::Input {
                name: "image".into(),
            },
            ty.clone(),
            span,
            &[],
        );
        for layer in 0..depth {
            let name = format!("conv{layer}.weight");
            let init = Init::Constant(0.0);
            let weight_ty = TensorType::fixed(vec![8, 8, 3, 3]);
            let param = Op::Param {
                name,
                role: ParamRole::Weight,
                init,
            };
            let weight = graph.add(param, weight_ty, span, &[]);
            let conv = Op::Conv2d {
                stride: [1, 1],
                padding: [1, 1],
                bias: false,
            };
            let y = graph.add(conv, ty.clone(), span, &[x, weight]);
            x = graph.add(Op::Activation(Activation::Relu), ty.clone(), span, &[y]);
        }
        let pooled = graph.add(Op::GlobalAvgPool, TensorType::batch(vec![8]), span, &[x]);
        graph.add_output("pooled", pooled);
        graph
    }

    fn arena_slots(schedule: &Schedule) -> Vec<&Slot> {
        let slots = schedule.plan.slots.iter();
        slots
            .filter(|slot| matches!(slot.storage, Storage::Arena { .. }))
            .collect()
    }

    #[test]
    fn live_arena_slots_never_overlap() {
        let schedule = schedule(&chain(6), 8, GraphMode::Eval).expect("schedule");
        let slots = arena_slots(&schedule);
        let extent = |slot: &Slot| match slot.storage {
            Storage::Arena { offset_bytes } => (offset_bytes, offset_bytes + slot.bytes(8)),
            _ => (0, 0),
        };
        for (index, first) in slots.iter().enumerate() {
            for second in &slots[index + 1..] {
                let live_together =
                    first.lifetime.0 <= second.lifetime.1 && second.lifetime.0 <= first.lifetime.1;
                let (a, b) = (extent(first), extent(second));
                let overlap = a.0 < b.1 && b.0 < a.1;
                assert!(!(live_together && overlap), "{first:?} overlaps {second:?}");
            }
        }
    }

    #[test]
    fn a_long_chain_reuses_memory_and_relus_run_in_place() {
        let schedule = schedule(&chain(8), 8, GraphMode::Eval).expect("schedule");
        let plan = &schedule.plan;
        let one = TensorType::batch(vec![8, 16, 16]);
        let one_bytes = aligned(8 * one.item_elements() * 4);
        // Two activations are live at a time (a convolution's input and output).
        assert_eq!(plan.arena_bytes, 2 * one_bytes, "{plan:#?}");
        assert!(plan.unshared_bytes >= 8 * one_bytes);
        // Each ReLU writes over its convolution's output.
        let relus = schedule
            .kernels
            .iter()
            .filter(|kernel| kernel.kind == KernelKind::Elementwise);
        for kernel in relus {
            let slots: Vec<usize> = kernel
                .args
                .iter()
                .map(|arg| plan.slot_of[&arg.value])
                .collect();
            assert_eq!(slots[0], slots[1], "{kernel:?}");
        }
        assert_eq!(
            plan.peak_bytes(),
            plan.arena_bytes + 8 * one.item_elements() * 4 + 8 * 4 * 8 + 8 * 8 * 9 * 4 * 8
        );
    }
}
