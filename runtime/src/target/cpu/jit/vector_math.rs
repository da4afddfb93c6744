//! Vector math through glibc's libmvec: after optimisation, every vector math intrinsic the
//! loop vectoriser produced (`llvm.exp.v16f32`, `llvm.log.v8f32`, ...) is replaced by the
//! libmvec function of the same shape (`_ZGVeN16v_expf`, `_ZGVdN8v_logf`, ...).
//!
//! Why here: LLVM's C API offers no way to give the vectoriser a vector library, and without
//! one the code generator expands each vector intrinsic into one scalar `expf` call per lane,
//! which makes activations such as ELU and softplus cost many times a ReLU.
//!
//! Invariant: a replacement has exactly the intrinsic's type (same lanes in and out), so
//! every call site stays well typed; intrinsics without a libmvec form are left alone.

use mlir_sys::{
    LLVMAddFunction, LLVMDeleteFunction, LLVMGetFirstFunction, LLVMGetNamedFunction,
    LLVMGetNextFunction, LLVMGlobalGetValueType, LLVMModuleRef, LLVMReplaceAllUsesWith,
    LLVMValueRef,
};

use super::llvm::c_string;
use super::name_of;

/// `(intrinsic, libmvec function)` for each vector width libmvec serves.
const REPLACEMENTS: [(&str, &str); 6] = [
    ("llvm.exp.v4f32", "_ZGVbN4v_expf"),
    ("llvm.exp.v8f32", "_ZGVdN8v_expf"),
    ("llvm.exp.v16f32", "_ZGVeN16v_expf"),
    ("llvm.log.v4f32", "_ZGVbN4v_logf"),
    ("llvm.log.v8f32", "_ZGVdN8v_logf"),
    ("llvm.log.v16f32", "_ZGVeN16v_logf"),
];

/// Replaces the vector math intrinsics of `module` by libmvec calls; returns how many
/// intrinsics were replaced.
///
/// # Safety
///
/// `module` must be a live LLVM module used by no other thread, and libmvec must be loaded
/// in the process (so the linker finds the functions).
pub(super) unsafe fn use_libmvec(module: LLVMModuleRef) -> usize {
    let mut intrinsics: Vec<(LLVMValueRef, &str)> = Vec::new();
    // SAFETY: iteration over a live module; replacements happen after it.
    unsafe {
        let mut function = LLVMGetFirstFunction(module);
        while !function.is_null() {
            let name = name_of(function);
            if let Some(&(_, target)) = REPLACEMENTS.iter().find(|(from, _)| *from == name) {
                intrinsics.push((function, target));
            }
            function = LLVMGetNextFunction(function);
        }
        for &(intrinsic, target) in &intrinsics {
            let target_name = c_string(target);
            let mut replacement = LLVMGetNamedFunction(module, target_name.as_ptr());
            if replacement.is_null() {
                let ty = LLVMGlobalGetValueType(intrinsic);
                replacement = LLVMAddFunction(module, target_name.as_ptr(), ty);
            }
            LLVMReplaceAllUsesWith(intrinsic, replacement);
            LLVMDeleteFunction(intrinsic);
        }
    }
    intrinsics.len()
}
