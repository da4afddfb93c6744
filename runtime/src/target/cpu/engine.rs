//! A thin owner of MLIR's execution engine (the LLVM ORC JIT), used through `mlir-sys`
//! directly because melior's wrapper neither reports a failed creation nor offers the
//! packed-wrapper lookup by C-interface name.
//!
//! Invariant: an `Engine` always holds a non-null engine, destroyed exactly once on drop; the
//! function pointers it hands out live as long as it does.

use std::ffi::c_void;

use melior::ir::Module;
use melior::StringRef;
use mlir_sys::{
    mlirExecutionEngineCreate, mlirExecutionEngineDestroy, mlirExecutionEngineInitialize,
    mlirExecutionEngineLookup, mlirExecutionEngineRegisterSymbol, MlirExecutionEngine,
};

/// The packed calling convention every kernel is called through: `void f(void **args)`, where
/// `args[i]` points to the `i`-th argument of `_mlir_ciface_<kernel>` (here, to a pointer to a
/// memref descriptor).
pub type PackedFunction = unsafe extern "C" fn(*mut *mut c_void);

/// A JIT-compiled module.
pub struct Engine {
    raw: MlirExecutionEngine,
}

// SAFETY: the engine is owned by one `Engine` and not tied to the thread that created it;
// LLVM's ORC JIT supports lookups and calls from any thread.
unsafe impl Send for Engine {}

impl Engine {
    /// JIT-compiles a module already lowered to the LLVM dialect, at LLVM `-O<opt_level>`;
    /// `None` when translation to LLVM IR or target setup fails.
    pub fn new(module: &Module, opt_level: i32) -> Option<Self> {
        // SAFETY: the module is a valid, live module; no shared libraries are passed.
        let raw = unsafe {
            mlirExecutionEngineCreate(
                module.to_raw(),
                opt_level,
                0,
                std::ptr::null(),
                false,
                false,
            )
        };
        (!raw.ptr.is_null()).then_some(Engine { raw })
    }

    /// Makes `address` visible to JIT code under the C symbol `name`.
    ///
    /// # Safety
    ///
    /// `address` must be a function with the C signature JIT code calls `name` with, and
    /// live as long as the engine.
    pub unsafe fn register_symbol(&self, name: &str, address: *mut ()) {
        // SAFETY: the engine is live; the caller vouches for the address.
        unsafe {
            mlirExecutionEngineRegisterSymbol(
                self.raw,
                StringRef::new(name).to_raw(),
                address.cast(),
            )
        }
    }

    /// Runs global constructors; call once, after registering symbols and before lookups.
    pub fn initialize(&self) {
        // SAFETY: the engine is live.
        unsafe { mlirExecutionEngineInitialize(self.raw) }
    }

    /// The packed wrapper of the C interface of `kernel` (`_mlir__mlir_ciface_<kernel>`), or
    /// `None` if the module does not define `kernel` with `llvm.emit_c_interface`. The first
    /// lookup compiles the module to machine code.
    pub fn packed_kernel(&self, kernel: &str) -> Option<PackedFunction> {
        let name = format!("_mlir__mlir_ciface_{kernel}");
        // SAFETY: the engine is live.
        let address =
            unsafe { mlirExecutionEngineLookup(self.raw, StringRef::new(&name).to_raw()) };
        // SAFETY: every `_mlir__mlir_ciface_*` symbol is a packed wrapper the execution engine
        // generated, with exactly the `PackedFunction` signature.
        (!address.is_null())
            .then(|| unsafe { std::mem::transmute::<*mut c_void, PackedFunction>(address) })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: `raw` is non-null and destroyed only here.
        unsafe { mlirExecutionEngineDestroy(self.raw) }
    }
}
