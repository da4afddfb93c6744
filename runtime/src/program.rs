//! A compiled program as plain data: one MLIR module holding every kernel, a table of tensor
//! slots, and entry points that are ordered lists of kernel calls.
//!
//! This is the whole contract between the compiler and a target. The compiler (scheduler and
//! MLIR emission) fills it in; a target (`target::cpu`, later `target::cuda`) compiles the
//! module and runs the steps. The runtime never sees the language or the IR.
//!
//! # Kernel calling convention
//!
//! Every kernel named by a [`Step`] is a function of the module of this form:
//!
//! ```mlir
//! func.func @bn_relu_3(%a0: memref<?x16x32x32xf32>, %a1: memref<16xf32>, %a2: memref<f32>,
//!                      %a3: memref<?x16x32x32xf32>) attributes {llvm.emit_c_interface} {
//!   ...
//!   return
//! }
//! ```
//!
//! - One memref argument per entry of [`Step::args`], in that order, and nothing else: no
//!   results, no scalar (non-memref) arguments.
//! - Destination-passing style: outputs are arguments the kernel writes in place; an effect
//!   (SGD update, running statistics) updates its arguments in place. A kernel must fully write
//!   every output it produces (arenas are reused and never cleared).
//! - The memref type of argument `i` is determined by the slot `args[i]`: element type `f32` or
//!   `i32` ([`DType`]); a batched slot has a dynamic leading dimension `?` followed by its static
//!   [`TensorSlot::dims`]; an unbatched slot has exactly its static dims; a scalar (no dims,
//!   unbatched) is a rank-0 memref such as `memref<f32>`. Layout is the identity (row-major,
//!   contiguous); the target passes descriptors with offset 0 and row-major strides.
//! - The target calls `_mlir_ciface_<kernel>` (generated because of `llvm.emit_c_interface`)
//!   with one pointer to a strided memref descriptor per argument; the dynamic leading size is
//!   the batch size of the call (or a part of it, see [`Step::batch_split`]).
//!
//! # Memory
//!
//! A slot's [`Storage`] says who owns its bytes: the caller ([`Storage::Persistent`], addressed
//! by name, kept across calls, e.g. in a [`ParamStore`]), the call ([`Storage::Feed`], provided
//! per call, read only), the program's arena ([`Storage::Arena`], temporaries placed by the
//! scheduler for [`Program::max_batch`]), or the result ([`Storage::Output`], returned by the
//! call).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Alignment, in bytes, of every [`Storage::Arena`] offset and of the arena itself.
pub const ARENA_ALIGN: usize = 64;

/// A compiled program: kernels, tensor table and entry points. See the module docs for the
/// calling convention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// One MLIR module (text) holding every kernel, plus `func.func private` declarations of
    /// the micro-kernels it calls (see `target::cpu::ukernels` for their signatures).
    pub mlir: String,
    /// Every tensor a kernel reads or writes; a [`Step`] refers to them by index.
    pub tensors: Vec<TensorSlot>,
    /// The entry points, e.g. `"train_step"` and `"eval_step"`.
    pub entries: Vec<Entry>,
    /// Largest batch size a call may use; arena offsets are planned for it.
    pub max_batch: usize,
    /// Size in bytes of the arena holding every [`Storage::Arena`] slot at `max_batch`;
    /// a multiple of [`ARENA_ALIGN`].
    pub arena_bytes: usize,
}

/// One tensor of the program: its type and where its bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorSlot {
    /// Name, unique in the program. For persistent slots it is the key in the [`ParamStore`]
    /// (e.g. `"stage1.block0.conv1.weight"`, `"...bn.running_mean"`, `"...weight.momentum"`);
    /// for feeds and outputs the key the caller uses (`"image"`, `"label"`, `"lr"`, `"loss"`,
    /// `"correct"`, `"logits"`); for arena slots a readable name used in logs only.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// True when the tensor has a leading batch dimension, whose size is the call's batch.
    pub batched: bool,
    /// Static dimensions after the batch dimension (all of them when not batched); empty for a
    /// scalar.
    pub dims: Vec<usize>,
    /// Who owns the bytes.
    pub storage: Storage,
}

/// Element type of a tensor slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit IEEE float (`f32` in MLIR).
    F32,
    /// 32-bit signed integer (`i32` in MLIR): class labels, counts.
    I32,
}

/// Where the bytes of a tensor slot live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Storage {
    /// Owned by the caller and kept across calls, addressed by the slot name: parameters,
    /// BatchNorm running statistics, optimizer momentum buffers. Never batched.
    Persistent,
    /// Provided by the caller for each call, read only: images, labels, the learning rate.
    Feed,
    /// A temporary at `offset_bytes` in the program's arena (a multiple of [`ARENA_ALIGN`]).
    /// Its extent is `bytes(max_batch)`; slots whose lifetimes overlap must not overlap.
    Arena {
        /// Byte offset of the slot's first element in the arena.
        offset_bytes: usize,
    },
    /// Written by the call and returned to the caller: loss, number correct, logits.
    Output,
}

/// An entry point: the kernels to call, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Name the caller uses, e.g. `"train_step"`, `"eval_step"`.
    pub name: String,
    /// Kernel calls, executed in order; each sees the effects of the previous ones.
    pub steps: Vec<Step>,
}

/// One kernel call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    /// The MLIR function name (without `@`) of the kernel.
    pub kernel: String,
    /// Indices into [`Program::tensors`], one per kernel argument, in order.
    pub args: Vec<usize>,
    /// True when the kernel treats each batch item independently: every batched argument is
    /// indexed only by its own batch item, no unbatched argument is written, and no loop
    /// spans the batch dimension together with others (a loop over `N·C·H·W` would round its
    /// vectorised remainder differently for a sub-batch). The target may then call the kernel
    /// on disjoint sub-batches in parallel (views of the batched arguments), which changes no
    /// result bit. False (the default) calls it once on the whole batch.
    #[serde(default)]
    pub batch_split: bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
        }
    }

    /// The MLIR element type.
    pub fn mlir_name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
        }
    }
}

impl TensorSlot {
    /// Number of elements for a call of batch size `batch` (ignored when not batched).
    pub fn elements(&self, batch: usize) -> usize {
        let item: usize = self.dims.iter().product();
        if self.batched {
            item * batch
        } else {
            item
        }
    }

    /// Size in bytes for a call of batch size `batch`.
    pub fn bytes(&self, batch: usize) -> usize {
        self.elements(batch) * self.dtype.size_bytes()
    }

    /// Full shape for a call of batch size `batch`: the batch first when batched.
    pub fn shape(&self, batch: usize) -> Vec<usize> {
        let mut shape = Vec::with_capacity(self.dims.len() + 1);
        if self.batched {
            shape.push(batch);
        }
        shape.extend_from_slice(&self.dims);
        shape
    }

    /// The MLIR memref type of a kernel argument bound to this slot, e.g.
    /// `memref<?x16x32x32xf32>` or `memref<f32>`.
    pub fn memref_type(&self) -> String {
        let mut text = String::from("memref<");
        if self.batched {
            text.push_str("?x");
        }
        for dim in &self.dims {
            text.push_str(&dim.to_string());
            text.push('x');
        }
        text.push_str(self.dtype.mlir_name());
        text.push('>');
        text
    }
}

impl Program {
    /// The entry named `name`, if any.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Ids of the slots for which `keep` holds, in slot order.
    pub fn slots_where(&self, keep: impl Fn(&TensorSlot) -> bool) -> Vec<usize> {
        (0..self.tensors.len())
            .filter(|&id| keep(&self.tensors[id]))
            .collect()
    }

    /// Checks the table's internal consistency: unique names, step arguments in range, arena
    /// slots aligned and inside `arena_bytes`, persistent slots unbatched.
    ///
    /// # Errors
    ///
    /// The first inconsistency found, as a [`ProgramError`].
    pub fn validate(&self) -> Result<(), ProgramError> {
        let mut names = BTreeMap::new();
        for (id, slot) in self.tensors.iter().enumerate() {
            if let Some(first) = names.insert(slot.name.as_str(), id) {
                return Err(ProgramError::DuplicateName {
                    name: slot.name.clone(),
                    first,
                    id,
                });
            }
            self.validate_slot(id, slot)?;
        }
        for entry in &self.entries {
            for step in &entry.steps {
                if let Some(&arg) = step.args.iter().find(|&&arg| arg >= self.tensors.len()) {
                    return Err(ProgramError::SlotOutOfRange {
                        entry: entry.name.clone(),
                        kernel: step.kernel.clone(),
                        slot: arg,
                        slots: self.tensors.len(),
                    });
                }
            }
        }
        Ok(())
    }

    fn validate_slot(&self, id: usize, slot: &TensorSlot) -> Result<(), ProgramError> {
        match slot.storage {
            Storage::Persistent if slot.batched => Err(ProgramError::BatchedPersistent {
                name: slot.name.clone(),
            }),
            Storage::Arena { offset_bytes } => {
                let end = offset_bytes + slot.bytes(self.max_batch);
                if offset_bytes % ARENA_ALIGN != 0 || end > self.arena_bytes {
                    return Err(ProgramError::BadArenaSlot {
                        name: slot.name.clone(),
                        id,
                        offset_bytes,
                        end,
                        arena_bytes: self.arena_bytes,
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// An inconsistency in a [`Program`]'s tables (a compiler bug, not a user error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// Two slots share a name.
    #[error("tensor slots {first} and {id} are both named `{name}`")]
    DuplicateName {
        /// The shared name.
        name: String,
        /// The first slot with it.
        first: usize,
        /// The second slot with it.
        id: usize,
    },
    /// A step names a slot that does not exist.
    #[error("entry `{entry}`, kernel `{kernel}`: slot {slot} out of range ({slots} slots)")]
    SlotOutOfRange {
        /// The entry.
        entry: String,
        /// The kernel of the step.
        kernel: String,
        /// The bad slot id.
        slot: usize,
        /// How many slots there are.
        slots: usize,
    },
    /// A persistent slot has a batch dimension.
    #[error("persistent tensor `{name}` is batched; persistent tensors have fixed shapes")]
    BatchedPersistent {
        /// The slot's name.
        name: String,
    },
    /// An arena slot is misaligned or extends past the arena.
    #[error(
        "arena tensor `{name}` (slot {id}) spans bytes {offset_bytes}..{end}, outside the \
         {arena_bytes}-byte arena or not aligned to 64"
    )]
    BadArenaSlot {
        /// The slot's name.
        name: String,
        /// The slot id.
        id: usize,
        /// Its offset.
        offset_bytes: usize,
        /// One past its last byte at `max_batch`.
        end: usize,
        /// The arena's size.
        arena_bytes: usize,
    },
}

/// The data of a host tensor, by element type.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `i32` elements.
    I32(Vec<i32>),
}

/// A tensor in host memory: full shape (batch included) and row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Full shape; the product equals the data length.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: TensorData,
}

impl HostTensor {
    /// A zero-filled tensor of the given type and shape.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Self {
        let count = shape.iter().product();
        let data = match dtype {
            DType::F32 => TensorData::F32(vec![0.0; count]),
            DType::I32 => TensorData::I32(vec![0; count]),
        };
        HostTensor { shape, data }
    }

    /// An `f32` tensor; `data.len()` must equal the product of `shape`.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        HostTensor {
            shape,
            data: TensorData::F32(data),
        }
    }

    /// An `i32` tensor; `data.len()` must equal the product of `shape`.
    pub fn i32(shape: Vec<usize>, data: Vec<i32>) -> Self {
        HostTensor {
            shape,
            data: TensorData::I32(data),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::I32(_) => DType::I32,
        }
    }

    /// Number of elements held.
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(values) => values.len(),
            TensorData::I32(values) => values.len(),
        }
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `f32` elements, if that is the type.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(values) => Some(values),
            TensorData::I32(_) => None,
        }
    }

    /// The `i32` elements, if that is the type.
    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            TensorData::I32(values) => Some(values),
            TensorData::F32(_) => None,
        }
    }

    /// Pointer to the first element, for building memref descriptors.
    pub(crate) fn data_ptr(&mut self) -> *mut u8 {
        match &mut self.data {
            TensorData::F32(values) => values.as_mut_ptr().cast(),
            TensorData::I32(values) => values.as_mut_ptr().cast(),
        }
    }
}

/// A borrowed view of tensor data, e.g. a batch of images fed to a call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TensorRef<'a> {
    /// `f32` elements.
    F32(&'a [f32]),
    /// `i32` elements.
    I32(&'a [i32]),
}

impl TensorRef<'_> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorRef::F32(_) => DType::F32,
            TensorRef::I32(_) => DType::I32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorRef::F32(values) => values.len(),
            TensorRef::I32(values) => values.len(),
        }
    }

    /// True when the view holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Address of the first element.
    pub(crate) fn data_ptr(&self) -> *const u8 {
        match self {
            TensorRef::F32(values) => values.as_ptr().cast(),
            TensorRef::I32(values) => values.as_ptr().cast(),
        }
    }
}

impl HostTensor {
    /// A borrowed view of the data.
    pub fn view(&self) -> TensorRef<'_> {
        match &self.data {
            TensorData::F32(values) => TensorRef::F32(values),
            TensorData::I32(values) => TensorRef::I32(values),
        }
    }
}

/// The caller-owned persistent tensors of a program, by slot name (parameters, BatchNorm
/// statistics, momentum buffers). Ordered by name, so iteration (and checkpoints) are stable.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamStore {
    /// The tensors by name.
    pub tensors: BTreeMap<String, HostTensor>,
}

impl ParamStore {
    /// A store holding a zero-filled tensor for every persistent slot of `program`; the caller
    /// then writes initial values (the compiler's initialisers, or a checkpoint).
    pub fn zeros_for(program: &Program) -> Self {
        let tensors = program
            .tensors
            .iter()
            .filter(|slot| slot.storage == Storage::Persistent)
            .map(|slot| {
                (
                    slot.name.clone(),
                    HostTensor::zeros(slot.dtype, slot.shape(1)),
                )
            })
            .collect();
        ParamStore { tensors }
    }

    /// The tensor named `name`, if present.
    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    /// The tensor named `name`, mutable, if present.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut HostTensor> {
        self.tensors.get_mut(name)
    }

    /// Inserts or replaces the tensor named `name`.
    pub fn insert(&mut self, name: impl Into<String>, tensor: HostTensor) {
        self.tensors.insert(name.into(), tensor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, batched: bool, dims: Vec<usize>, storage: Storage) -> TensorSlot {
        TensorSlot {
            name: name.into(),
            dtype: DType::F32,
            batched,
            dims,
            storage,
        }
    }

    fn program(tensors: Vec<TensorSlot>, arena_bytes: usize) -> Program {
        let steps = vec![Step {
            kernel: "k".into(),
            args: vec![0, 1],
            batch_split: false,
        }];
        Program {
            mlir: String::new(),
            tensors,
            entries: vec![Entry {
                name: "train_step".into(),
                steps,
            }],
            max_batch: 4,
            arena_bytes,
        }
    }

    #[test]
    fn memref_type_has_dynamic_batch_and_rank_zero_scalars() {
        let image = slot("image", true, vec![3, 32, 32], Storage::Feed);
        assert_eq!(image.memref_type(), "memref<?x3x32x32xf32>");
        let lr = slot("lr", false, vec![], Storage::Feed);
        assert_eq!(lr.memref_type(), "memref<f32>");
        assert_eq!(image.bytes(2), 2 * 3 * 32 * 32 * 4);
        assert_eq!(image.shape(5), vec![5, 3, 32, 32]);
    }

    #[test]
    fn validate_accepts_aligned_arena_and_rejects_overflow() {
        let tensors = vec![
            slot("w", false, vec![16], Storage::Persistent),
            slot("t", true, vec![4], Storage::Arena { offset_bytes: 64 }),
        ];
        assert_eq!(program(tensors.clone(), 128).validate(), Ok(()));
        let error = program(tensors, 100).validate();
        assert!(
            matches!(error, Err(ProgramError::BadArenaSlot { end: 128, .. })),
            "{error:?}"
        );
    }

    #[test]
    fn validate_rejects_duplicates_bad_ids_and_batched_params() {
        let duplicate = vec![
            slot("a", false, vec![1], Storage::Feed),
            slot("a", false, vec![1], Storage::Feed),
        ];
        let error = program(duplicate, 0).validate();
        assert!(
            matches!(error, Err(ProgramError::DuplicateName { .. })),
            "{error:?}"
        );
        let one = vec![slot("a", false, vec![1], Storage::Feed)];
        let error = program(one, 0).validate();
        assert!(
            matches!(error, Err(ProgramError::SlotOutOfRange { slot: 1, .. })),
            "{error:?}"
        );
        let batched = vec![
            slot("p", true, vec![1], Storage::Persistent),
            slot("b", false, vec![1], Storage::Feed),
        ];
        let error = program(batched, 0).validate();
        assert!(
            matches!(error, Err(ProgramError::BatchedPersistent { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn program_round_trips_through_json_and_steps_default_unsplit() {
        let original = program(vec![slot("a", true, vec![2], Storage::Output)], 0);
        let text = serde_json::to_string(&original).expect("serialises");
        assert_eq!(
            serde_json::from_str::<Program>(&text).expect("parses"),
            original
        );
        let step: Step = serde_json::from_str(r#"{"kernel":"k","args":[0]}"#).expect("parses");
        assert!(!step.batch_split);
    }

    #[test]
    fn param_store_holds_zeroed_persistent_slots_only() {
        let tensors = vec![
            slot("w", false, vec![2, 3], Storage::Persistent),
            slot("x", true, vec![3], Storage::Feed),
        ];
        let store = ParamStore::zeros_for(&program(tensors, 0));
        assert_eq!(store.tensors.len(), 1);
        assert_eq!(store.get("w").map(HostTensor::len), Some(6));
    }
}
