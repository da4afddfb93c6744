//! Calling one kernel step: memref descriptors built from tensor slots and a batch range, and
//! the call of the kernel's C interface with a pointer to each.
//!
//! Invariant: a [`Frame`] owns the descriptor words its argument pointers point into, and is
//! never moved between building its pointers and the call (the words live on the heap).

use std::ffi::c_void;

use crate::program::TensorSlot;
use crate::target::cpu::jit::{self, CompiledKernel};

/// The arguments of one call: every descriptor (`[allocated, aligned, offset, sizes..,
/// strides..]`, all 64-bit words) and a pointer to each.
pub struct Frame {
    kernel: CompiledKernel,
    words: Vec<i64>,
    descriptors: Vec<*mut c_void>,
}

// SAFETY: a frame only holds addresses. Frames sent to pool threads are those of the parts of
// one batch-split step: their batched arguments cover disjoint batch ranges and their
// unbatched arguments are only read (the contract of `Step::batch_split`).
unsafe impl Send for Frame {}

impl Frame {
    /// Builds the descriptors of `args` for the batch items `first..first + count`; `bases[id]`
    /// is the address of slot `id`'s first element for the whole call.
    pub fn new(
        kernel: CompiledKernel,
        slots: &[TensorSlot],
        args: &[usize],
        bases: &[*mut u8],
        first: usize,
        count: usize,
    ) -> Self {
        let mut words = Vec::new();
        let mut starts = Vec::with_capacity(args.len());
        for &id in args {
            let slot = &slots[id];
            let mut base = bases[id];
            let mut sizes = slot.dims.clone();
            if slot.batched {
                base = base.wrapping_add(first * slot.bytes(1));
                sizes.insert(0, count);
            }
            starts.push(words.len());
            push_descriptor(&mut words, base, &sizes);
        }
        let mut frame = Frame {
            kernel,
            words,
            descriptors: Vec::new(),
        };
        let origin = frame.words.as_mut_ptr();
        frame.descriptors = starts
            .iter()
            .map(|&start| origin.wrapping_add(start).cast())
            .collect();
        frame
    }

    /// Calls the kernel.
    ///
    /// # Safety
    ///
    /// The bases the frame was built from must address live buffers of their slots' sizes,
    /// and the kernel's signature must be the one the slots describe (checked at compile).
    pub unsafe fn call(&mut self) {
        // SAFETY: `descriptors[i]` points to the descriptor words of argument i; the caller
        // vouches for the buffers and the signature.
        unsafe { jit::call(self.kernel, &self.descriptors) }
    }
}

/// Appends a row-major descriptor of `sizes` at `base` to `words`.
fn push_descriptor(words: &mut Vec<i64>, base: *mut u8, sizes: &[usize]) {
    let address = base as usize as i64;
    words.extend_from_slice(&[address, address, 0]);
    words.extend(sizes.iter().map(|&size| size as i64));
    let mut strides = vec![0i64; sizes.len()];
    let mut stride = 1i64;
    for (target, &size) in strides.iter_mut().zip(sizes).rev() {
        *target = stride;
        stride *= size as i64;
    }
    words.extend(strides);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_words_are_pointers_offset_sizes_and_row_major_strides() {
        let mut words = Vec::new();
        push_descriptor(&mut words, 0x1000 as *mut u8, &[2, 3, 4]);
        assert_eq!(words, vec![0x1000, 0x1000, 0, 2, 3, 4, 12, 4, 1]);
        words.clear();
        push_descriptor(&mut words, 0x40 as *mut u8, &[]);
        assert_eq!(words, vec![0x40, 0x40, 0]);
    }
}
