//! Helpers shared by the kernel emitters: memref type text, reshaping views, and the text of a
//! `linalg.generic` op with its indexing maps and region.
//!
//! Invariant: memref types here are always identity-layout (row-major, contiguous), which is
//! what the calling convention guarantees for kernel arguments and what `collapse_shape` and
//! `expand_shape` of contiguous groups preserve.

use crate::ir::{DType, TensorType};

use super::writer::FunctionWriter;
use super::MlirError;

/// A dimension of a memref type: static, or the dynamic batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// The dynamic (batch) dimension `?`.
    Dynamic,
    /// A static size.
    Static(usize),
}

/// The MLIR element type of `dtype`.
pub fn element_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::I32 => "i32",
    }
}

/// The shape of a value of type `ty` as memref dimensions.
pub fn dims_of(ty: &TensorType) -> Vec<Dim> {
    let mut dims = Vec::with_capacity(ty.dims.len() + 1);
    if ty.batched {
        dims.push(Dim::Dynamic);
    }
    dims.extend(ty.dims.iter().map(|&size| Dim::Static(size)));
    dims
}

/// `memref<?x16x32xf32>` for the given dimensions and element type.
pub fn memref_text(dims: &[Dim], dtype: DType) -> String {
    let mut text = String::from("memref<");
    for dim in dims {
        match dim {
            Dim::Dynamic => text.push_str("?x"),
            Dim::Static(size) => {
                text.push_str(&size.to_string());
                text.push('x');
            }
        }
    }
    text.push_str(element_type(dtype));
    text.push('>');
    text
}

/// The memref type of a value of type `ty`.
pub fn memref_of(ty: &TensorType) -> String {
    memref_text(&dims_of(ty), ty.dtype)
}

/// A memref SSA value together with its shape and element type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// The SSA name.
    pub name: String,
    /// Its dimensions.
    pub dims: Vec<Dim>,
    /// Its element type.
    pub dtype: DType,
    /// A non-identity layout (`strided<[...], offset: k>`), for subviews.
    pub layout: Option<String>,
}

impl Buffer {
    /// The buffer `name` holding a value of type `ty`.
    pub fn of(name: String, ty: &TensorType) -> Self {
        Buffer {
            name,
            dims: dims_of(ty),
            dtype: ty.dtype,
            layout: None,
        }
    }

    /// Its memref type text.
    pub fn ty(&self) -> String {
        let plain = memref_text(&self.dims, self.dtype);
        match &self.layout {
            Some(layout) => format!("{}, {layout}>", &plain[..plain.len() - 1]),
            None => plain,
        }
    }

    /// The number of elements of one batch item (of the whole buffer when not batched).
    pub fn item_elements(&self) -> usize {
        self.dims
            .iter()
            .map(|dim| {
                if let Dim::Static(size) = dim {
                    *size
                } else {
                    1
                }
            })
            .product()
    }

    /// The static size of dimension `index` (1 for the dynamic batch).
    pub fn static_dim(&self, index: usize) -> usize {
        match self.dims.get(index) {
            Some(Dim::Static(size)) => *size,
            _ => 1,
        }
    }
}

/// Collapses contiguous groups of dimensions: `groups` lists, for each result dimension, how
/// many source dimensions it takes (in order). Returns the buffer itself when nothing changes.
pub fn collapse(writer: &mut FunctionWriter, buffer: &Buffer, groups: &[usize]) -> Buffer {
    if groups.iter().all(|&count| count == 1) {
        return buffer.clone();
    }
    let mut dims = Vec::with_capacity(groups.len());
    let mut reassociation = Vec::with_capacity(groups.len());
    let mut next = 0;
    for &count in groups {
        let members: Vec<usize> = (next..next + count).collect();
        let dynamic = members
            .iter()
            .any(|&index| buffer.dims[index] == Dim::Dynamic);
        let size: usize = members
            .iter()
            .map(|&index| buffer.static_dim(index))
            .product();
        dims.push(if dynamic {
            Dim::Dynamic
        } else {
            Dim::Static(size)
        });
        let text: Vec<String> = members.iter().map(usize::to_string).collect();
        reassociation.push(format!("[{}]", text.join(", ")));
        next += count;
    }
    let result = Buffer {
        name: String::new(),
        dims,
        dtype: buffer.dtype,
        layout: None,
    };
    let rhs = format!(
        "memref.collapse_shape {} [{}] : {} into {}",
        buffer.name,
        reassociation.join(", "),
        buffer.ty(),
        result.ty()
    );
    let name = writer.assign("view", &rhs);
    Buffer { name, ..result }
}

/// Views `buffer` (holding a value of type `from`) as a value of type `to`: same element type,
/// both batched or both not, same number of elements per item. Goes through the fully
/// collapsed form `[?, P]` (or `[P]`) when the shapes differ.
///
/// # Errors
///
/// [`MlirError::UnsupportedView`] when the two types do not describe the same bytes, or one
/// is a scalar.
pub fn view_as(
    writer: &mut FunctionWriter,
    buffer: &Buffer,
    from: &TensorType,
    to: &TensorType,
) -> Result<Buffer, MlirError> {
    if from.dims == to.dims && from.batched == to.batched && from.dtype == to.dtype {
        return Ok(buffer.clone());
    }
    let compatible = from.dtype == to.dtype
        && from.batched == to.batched
        && from.item_elements() == to.item_elements()
        && !from.dims.is_empty()
        && !to.dims.is_empty();
    if !compatible {
        return Err(MlirError::UnsupportedView {
            from: from.clone(),
            to: to.clone(),
        });
    }
    let lead = usize::from(from.batched);
    let mut groups = vec![1; lead];
    groups.push(from.dims.len());
    let flat = collapse(writer, buffer, &groups);
    if to.dims.len() == 1 {
        return Ok(flat);
    }
    let result = Buffer::of(String::new(), to);
    let mut reassociation: Vec<String> = (0..lead).map(|index| format!("[{index}]")).collect();
    let inner: Vec<String> = (lead..lead + to.dims.len())
        .map(|index| index.to_string())
        .collect();
    reassociation.push(format!("[{}]", inner.join(", ")));
    let mut sizes: Vec<String> = Vec::new();
    if from.batched {
        let zero = writer.index(0);
        sizes.push(writer.assign(
            "n",
            &format!("memref.dim {}, {zero} : {}", flat.name, flat.ty()),
        ));
    }
    sizes.extend(to.dims.iter().map(usize::to_string));
    let rhs = format!(
        "memref.expand_shape {} [{}] output_shape [{}] : {} into {}",
        flat.name,
        reassociation.join(", "),
        sizes.join(", "),
        flat.ty(),
        result.ty()
    );
    let name = writer.assign("view", &rhs);
    Ok(Buffer { name, ..result })
}

/// The batch size of a batched buffer, as an `index` value.
pub fn batch_size(writer: &mut FunctionWriter, buffer: &Buffer) -> String {
    let zero = writer.index(0);
    writer.assign(
        "n",
        &format!("memref.dim {}, {zero} : {}", buffer.name, buffer.ty()),
    )
}

/// `N·per_item` as an `f32`, `N` being the batch size of the batched `buffer`: the number of
/// elements per channel of a batch (`M` of BatchNorm).
pub fn batch_count(writer: &mut FunctionWriter, buffer: &Buffer, per_item: usize) -> String {
    let batch = batch_size(writer, buffer);
    let per_item = writer.index(per_item);
    let count = writer.assign("m", &format!("arith.muli {batch}, {per_item} : index"));
    let count = writer.assign("m", &format!("arith.index_cast {count} : index to i64"));
    writer.assign("m", &format!("arith.sitofp {count} : i64 to f32"))
}

/// One operand of a `linalg.generic`: the buffer and its indexing map's results, written over
/// dimension names `d0, d1, ...` (e.g. `"d0, d1"` or `"0"` or `""`).
#[derive(Clone, Debug)]
pub struct GenericOperand {
    /// The buffer.
    pub buffer: Buffer,
    /// Results of the indexing map.
    pub map: String,
}

/// A `linalg.generic` to write: loop count and iterator kinds, inputs and outputs.
#[derive(Clone, Debug, Default)]
pub struct Generic {
    /// `"parallel"` or `"reduction"` per loop.
    pub iterators: Vec<&'static str>,
    /// Read operands.
    pub ins: Vec<GenericOperand>,
    /// Written (or accumulated) operands.
    pub outs: Vec<GenericOperand>,
}

impl Generic {
    /// Writes the op; `body` receives the block arguments (inputs then outputs, as scalars) and
    /// returns the values to yield, one per output.
    pub fn write(
        &self,
        writer: &mut FunctionWriter,
        body: impl FnOnce(&mut FunctionWriter, &[String]) -> Result<Vec<String>, MlirError>,
    ) -> Result<(), MlirError> {
        let dims: Vec<String> = (0..self.iterators.len())
            .map(|index| format!("d{index}"))
            .collect();
        let domain = dims.join(", ");
        let operands = self.ins.iter().chain(&self.outs);
        let maps: Vec<String> = operands
            .clone()
            .map(|op| format!("affine_map<({domain}) -> ({})>", op.map))
            .collect();
        let iterators: Vec<String> = self
            .iterators
            .iter()
            .map(|kind| format!("\"{kind}\""))
            .collect();
        let list = |operands: &[GenericOperand]| {
            let names: Vec<&str> = operands.iter().map(|op| op.buffer.name.as_str()).collect();
            let types: Vec<String> = operands.iter().map(|op| op.buffer.ty()).collect();
            format!("{} : {}", names.join(", "), types.join(", "))
        };
        let mut head = format!(
            "linalg.generic {{indexing_maps = [{}], iterator_types = [{}]}}",
            maps.join(", "),
            iterators.join(", ")
        );
        if !self.ins.is_empty() {
            head.push_str(&format!(" ins({})", list(&self.ins)));
        }
        head.push_str(&format!(" outs({}) {{", list(&self.outs)));
        writer.open(&head);
        let mut arguments = Vec::new();
        let mut declarations = Vec::new();
        for operand in operands {
            let name = writer.fresh("b");
            declarations.push(format!("{name}: {}", element_type(operand.buffer.dtype)));
            arguments.push(name);
        }
        writer.label(&format!("^bb0({}):", declarations.join(", ")));
        let yields = body(writer, &arguments)?;
        let types: Vec<&str> = self
            .outs
            .iter()
            .map(|op| element_type(op.buffer.dtype))
            .collect();
        writer.line(&format!(
            "linalg.yield {} : {}",
            yields.join(", "),
            types.join(", ")
        ));
        writer.close("}");
        Ok(())
    }
}

/// The identity map results over `rank` loops: `"d0, d1, ..."`.
pub fn identity_map(rank: usize) -> String {
    let dims: Vec<String> = (0..rank).map(|index| format!("d{index}")).collect();
    dims.join(", ")
}

/// Writes `linalg.fill` of `buffer` with the scalar `value`.
pub fn fill(writer: &mut FunctionWriter, buffer: &Buffer, value: &str) {
    let element = element_type(buffer.dtype);
    writer.line(&format!(
        "linalg.fill ins({value} : {element}) outs({} : {})",
        buffer.name,
        buffer.ty()
    ));
}

/// Allocates a temporary buffer of static shape (freed by [`dealloc`]).
pub fn alloc(writer: &mut FunctionWriter, dims: Vec<Dim>, dtype: DType) -> Buffer {
    let buffer = Buffer {
        name: String::new(),
        dims,
        dtype,
        layout: None,
    };
    let name = writer.assign("tmp", &format!("memref.alloc() : {}", buffer.ty()));
    Buffer { name, ..buffer }
}

/// Allocates a temporary whose leading dimension is the dynamic size `batch`.
pub fn alloc_batched(
    writer: &mut FunctionWriter,
    batch: &str,
    rest: &[usize],
    dtype: DType,
) -> Buffer {
    let mut dims = vec![Dim::Dynamic];
    dims.extend(rest.iter().map(|&size| Dim::Static(size)));
    let buffer = Buffer {
        name: String::new(),
        dims,
        dtype,
        layout: None,
    };
    let name = writer.assign("tmp", &format!("memref.alloc({batch}) : {}", buffer.ty()));
    Buffer { name, ..buffer }
}

/// Frees a buffer from [`alloc`] or [`alloc_batched`].
pub fn dealloc(writer: &mut FunctionWriter, buffer: &Buffer) {
    writer.line(&format!("memref.dealloc {} : {}", buffer.name, buffer.ty()));
}
