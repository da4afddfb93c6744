//! The CPU target's JIT: a module in the LLVM dialect is translated to LLVM IR, split into
//! one part per core, each part optimised (`default<O3>` for the host CPU, loop unrolling
//! off), given libmvec's vector math, and compiled to an object file on its own thread; the
//! objects are linked in process by ORC's LLJIT with the micro-kernels and the C library
//! visible to them.
//!
//! Why not MLIR's `ExecutionEngine`: it optimises without the host's target information (its
//! loops come out scalar), compiles on one thread, and reports failures without detail.
//!
//! Why no loop unrolling: kernels' innermost loops have small static trip counts (32, 64);
//! unrolled fully before vectorisation, they leave the vectoriser an outer loop with strided
//! accesses, which it turns into gathers and scatters (slower than scalar code). Without
//! unrolling the innermost loops vectorise, and interleaving still unrolls them by vectors.
//!
//! Invariant: a [`Jit`] owns its LLJIT, disposed once on drop; the kernel addresses it hands
//! out stay valid while it lives. Each part exports only its own kernels' `_mlir_ciface_`
//! functions; everything else is made internal, so the parts never define a symbol twice.

mod llvm;
mod vector_math;

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;

use melior::ir::Module;
use mlir_sys::{
    mlirTranslateModuleToLLVMIR, LLVMContextCreate, LLVMContextDispose, LLVMContextRef,
    LLVMCountParams, LLVMDeleteFunction, LLVMDisposeMemoryBuffer, LLVMDisposeModule,
    LLVMGetFirstFunction, LLVMGetFirstGlobal, LLVMGetFirstUse, LLVMGetNextFunction,
    LLVMGetNextGlobal, LLVMGetParam, LLVMGetTypeKind, LLVMGetValueName2, LLVMIsDeclaration,
    LLVMLinkage_LLVMInternalLinkage, LLVMMemoryBufferRef, LLVMModuleRef, LLVMSetLinkage,
    LLVMSetTarget, LLVMTypeKind_LLVMPointerTypeKind, LLVMTypeOf, LLVMValueRef,
};

use llvm::{c_string, check, Host, TargetMachine};

/// The LLVM pass pipeline each part runs.
const PASSES: &str = "default<O3>";

/// Prefix of the C-interface wrapper MLIR generates for `llvm.emit_c_interface` functions.
const CIFACE: &str = "_mlir_ciface_";

/// A compiled kernel: the address of its `_mlir_ciface_` function and its number of
/// (pointer) arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledKernel {
    /// Address of `_mlir_ciface_<kernel>`.
    pub address: usize,
    /// Number of arguments, each a pointer to a memref descriptor.
    pub arity: usize,
}

/// JIT-compiled kernels, linked in this process.
pub struct Jit {
    raw: llvm::LljitRef,
}

// SAFETY: the LLJIT is owned by one `Jit` and not tied to the thread that created it.
unsafe impl Send for Jit {}

impl Drop for Jit {
    fn drop(&mut self) {
        // SAFETY: `raw` is a live LLJIT disposed only here; a disposal error is not actionable.
        let _ = unsafe { check(llvm::LLVMOrcDisposeLLJIT(self.raw), "dispose") };
    }
}

/// One part of the module: its own LLVM context and module.
struct Part {
    context: LLVMContextRef,
    module: LLVMModuleRef,
}

// SAFETY: a part's context and module are used by one thread at a time (built on the caller,
// then moved to exactly one compile thread, which frees them).
unsafe impl Send for Part {}

/// An object file in memory, owned until handed to the LLJIT.
struct Object(LLVMMemoryBufferRef);

// SAFETY: a memory buffer is plain bytes, used by one thread at a time.
unsafe impl Send for Object {}

impl Drop for Object {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a buffer not yet given to the LLJIT is still ours to free.
            unsafe { LLVMDisposeMemoryBuffer(self.0) }
        }
    }
}

impl Jit {
    /// Compiles a module lowered to the LLVM dialect, on `threads` threads, and resolves
    /// `kernels`; `symbols` (C name, address) are made visible to the compiled code.
    ///
    /// # Errors
    ///
    /// LLVM's message when translation, optimisation, code generation or linking fails, or
    /// when a kernel takes a non-pointer argument.
    pub fn compile(
        module: &Module<'_>,
        kernels: &[String],
        symbols: &[(&str, *mut ())],
        threads: usize,
    ) -> Result<(Jit, HashMap<String, CompiledKernel>), String> {
        let host = Host::detect();
        let count = threads.clamp(1, kernels.len().max(1));
        let mut parts = Vec::with_capacity(count);
        let mut arities = HashMap::new();
        for index in 0..count {
            let keep: HashSet<&str> = kernels
                .iter()
                .skip(index)
                .step_by(count)
                .map(String::as_str)
                .collect();
            let part = translate(module)?;
            let all: HashSet<&str> = kernels.iter().map(String::as_str).collect();
            // SAFETY: the part's module is live and only used by this thread now.
            let found = unsafe { select_kernels(part.module, &keep, &all) };
            parts.push(part);
            arities.extend(found?);
        }
        let objects = compile_parts(parts, &host)?;
        let jit = link(objects, symbols)?;
        let mut compiled = HashMap::new();
        for (kernel, arity) in arities {
            let address = jit.lookup(&format!("{CIFACE}{kernel}"))?;
            compiled.insert(kernel, CompiledKernel { address, arity });
        }
        Ok((jit, compiled))
    }

    fn lookup(&self, name: &str) -> Result<usize, String> {
        let mut address = 0u64;
        let name = c_string(name);
        // SAFETY: the LLJIT is live; the name is NUL-terminated.
        unsafe {
            check(
                llvm::LLVMOrcLLJITLookup(self.raw, &mut address, name.as_ptr()),
                "lookup",
            )?
        };
        Ok(address as usize)
    }
}

/// Translates the module into a fresh LLVM context.
fn translate(module: &Module<'_>) -> Result<Part, String> {
    // SAFETY: a new context; the module is a live, lowered MLIR module.
    unsafe {
        let context = LLVMContextCreate();
        let translated = mlirTranslateModuleToLLVMIR(module.as_operation().to_raw(), context);
        if translated.is_null() {
            LLVMContextDispose(context);
            return Err("translation of the lowered module to LLVM IR failed".into());
        }
        Ok(Part {
            context,
            module: translated,
        })
    }
}

/// The name of an LLVM value.
///
/// # Safety
///
/// `value` must be a live LLVM value.
pub(super) unsafe fn name_of(value: LLVMValueRef) -> String {
    let mut length = 0;
    // SAFETY: the name pointer is valid for `length` bytes while the value lives.
    unsafe {
        let pointer = LLVMGetValueName2(value, &mut length);
        let bytes = std::slice::from_raw_parts(pointer.cast::<u8>(), length);
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Keeps the kernels in `keep` exported and drops the other kernels of `all`; every other
/// definition becomes internal. Returns the arity of each kept kernel found.
///
/// # Safety
///
/// `module` must be a live LLVM module used by no other thread.
unsafe fn select_kernels(
    module: LLVMModuleRef,
    keep: &HashSet<&str>,
    all: &HashSet<&str>,
) -> Result<Vec<(String, usize)>, String> {
    let mut found = Vec::new();
    let mut dropped = Vec::new();
    // SAFETY: iteration over a live module; deletions happen after it.
    unsafe {
        let mut function = LLVMGetFirstFunction(module);
        while !function.is_null() {
            let next = LLVMGetNextFunction(function);
            if LLVMIsDeclaration(function) == 0 {
                let name = name_of(function);
                match name.strip_prefix(CIFACE) {
                    Some(kernel) if keep.contains(kernel) => {
                        found.push((kernel.to_owned(), pointer_arity(function, kernel)?));
                    }
                    Some(kernel) if all.contains(kernel) => dropped.push(function),
                    _ => LLVMSetLinkage(function, LLVMLinkage_LLVMInternalLinkage),
                }
            }
            function = next;
        }
        dropped
            .into_iter()
            .for_each(|function| LLVMDeleteFunction(function));
        delete_unused_internal(module);
        let mut global = LLVMGetFirstGlobal(module);
        while !global.is_null() {
            if LLVMIsDeclaration(global) == 0 {
                LLVMSetLinkage(global, LLVMLinkage_LLVMInternalLinkage);
            }
            global = LLVMGetNextGlobal(global);
        }
    }
    Ok(found)
}

/// The number of parameters of a kernel's C interface, all of which must be pointers.
///
/// # Safety
///
/// `function` must be a live LLVM function.
unsafe fn pointer_arity(function: LLVMValueRef, kernel: &str) -> Result<usize, String> {
    // SAFETY: parameter queries on a live function.
    unsafe {
        let count = LLVMCountParams(function);
        for index in 0..count {
            let kind = LLVMGetTypeKind(LLVMTypeOf(LLVMGetParam(function, index)));
            if kind != LLVMTypeKind_LLVMPointerTypeKind {
                return Err(format!(
                    "kernel `{kernel}`: argument {index} is not a memref"
                ));
            }
        }
        Ok(count as usize)
    }
}

/// Deletes internal functions nothing calls (the bodies of the dropped kernels), repeatedly.
///
/// # Safety
///
/// `module` must be a live LLVM module used by no other thread.
unsafe fn delete_unused_internal(module: LLVMModuleRef) {
    // SAFETY: each pass collects first, then deletes functions without uses.
    unsafe {
        loop {
            let mut unused = Vec::new();
            let mut function = LLVMGetFirstFunction(module);
            while !function.is_null() {
                let internal =
                    mlir_sys::LLVMGetLinkage(function) == LLVMLinkage_LLVMInternalLinkage;
                if internal
                    && LLVMIsDeclaration(function) == 0
                    && LLVMGetFirstUse(function).is_null()
                {
                    unused.push(function);
                }
                function = LLVMGetNextFunction(function);
            }
            if unused.is_empty() {
                return;
            }
            unused
                .into_iter()
                .for_each(|function| LLVMDeleteFunction(function));
        }
    }
}

/// Optimises and compiles every part, each on its own thread.
///
/// When the environment variable `COOPC_JIT_DUMP` names a directory, each object file is
/// also written there (`part<i>.o`), for `objdump`.
fn compile_parts(parts: Vec<Part>, host: &Host) -> Result<Vec<Object>, String> {
    let dump = std::env::var_os("COOPC_JIT_DUMP").map(std::path::PathBuf::from);
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .enumerate()
            .map(|(index, part)| {
                let dump = dump.as_ref().map(|dir| dir.join(format!("part{index}.o")));
                scope.spawn(move || {
                    let object = compile_part(part, host)?;
                    if let Some(path) = dump {
                        // SAFETY: the buffer is live and holds `size` bytes from its start.
                        let bytes = unsafe {
                            std::slice::from_raw_parts(
                                mlir_sys::LLVMGetBufferStart(object.0).cast::<u8>(),
                                mlir_sys::LLVMGetBufferSize(object.0),
                            )
                        };
                        std::fs::write(&path, bytes)
                            .map_err(|error| format!("{path:?}: {error}"))?;
                    }
                    Ok(object)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("a JIT thread panicked".into()))
            })
            .collect()
    })
}

/// Optimises one part for the host and emits it as an object file; frees the part.
fn compile_part(part: Part, host: &Host) -> Result<Object, String> {
    let result = TargetMachine::new(host).and_then(|machine| {
        // SAFETY: the part's module is live and owned by this thread; the machine outlives
        // every call here.
        unsafe { optimize_and_emit(part.module, &machine, host) }
    });
    // SAFETY: the module and its context are freed once, after their last use.
    unsafe {
        LLVMDisposeModule(part.module);
        LLVMContextDispose(part.context);
    }
    result
}

/// # Safety
///
/// `module` must be a live LLVM module used by no other thread.
unsafe fn optimize_and_emit(
    module: LLVMModuleRef,
    machine: &TargetMachine,
    host: &Host,
) -> Result<Object, String> {
    // SAFETY: calls on a live module, machine and options, each freed below.
    unsafe {
        LLVMSetTarget(module, host.triple.as_ptr());
        let layout = llvm::LLVMCreateTargetDataLayout(machine.raw);
        llvm::LLVMSetModuleDataLayout(module, layout);
        llvm::LLVMDisposeTargetData(layout);
        let options = llvm::LLVMCreatePassBuilderOptions();
        llvm::LLVMPassBuilderOptionsSetLoopVectorization(options, 1);
        llvm::LLVMPassBuilderOptionsSetSLPVectorization(options, 1);
        llvm::LLVMPassBuilderOptionsSetLoopUnrolling(options, 0);
        llvm::LLVMPassBuilderOptionsSetLoopInterleaving(options, 1);
        let passes = c_string(PASSES);
        let error = llvm::LLVMRunPasses(module, passes.as_ptr(), machine.raw, options);
        llvm::LLVMDisposePassBuilderOptions(options);
        check(error, "optimisation")?;
        if llvm::vector_math_loaded() {
            vector_math::use_libmvec(module);
        }
        let mut buffer = std::ptr::null_mut();
        let mut message = std::ptr::null_mut();
        let failed = llvm::LLVMTargetMachineEmitToMemoryBuffer(
            machine.raw,
            module,
            llvm::OBJECT_FILE,
            &mut message,
            &mut buffer,
        );
        if failed != 0 {
            return Err(format!("code generation: {}", llvm::take_message(message)));
        }
        Ok(Object(buffer))
    }
}

/// Creates the LLJIT, makes `symbols` and the process's libraries visible, and adds the
/// objects.
fn link(objects: Vec<Object>, symbols: &[(&str, *mut ())]) -> Result<Jit, String> {
    let mut raw = std::ptr::null_mut();
    // SAFETY: default builder; out-pointer valid.
    unsafe {
        check(
            llvm::LLVMOrcCreateLLJIT(&mut raw, std::ptr::null_mut()),
            "LLJIT",
        )?
    };
    let jit = Jit { raw };
    // SAFETY: the LLJIT is live; names are interned through it and handed to ORC, which
    // takes ownership of them and of the materialisation unit and generator.
    unsafe {
        let dylib = llvm::LLVMOrcLLJITGetMainJITDylib(raw);
        let prefix = llvm::LLVMOrcLLJITGetGlobalPrefix(raw);
        let mut generator = std::ptr::null_mut();
        let error = llvm::LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
            &mut generator,
            prefix,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        check(error, "process symbols")?;
        llvm::LLVMOrcJITDylibAddGenerator(dylib, generator);
        let mut pairs: Vec<llvm::SymbolMapPair> = symbols
            .iter()
            .map(|&(name, address)| llvm::SymbolMapPair {
                name: llvm::LLVMOrcLLJITMangleAndIntern(raw, c_string(name).as_ptr()),
                symbol: llvm::EvaluatedSymbol {
                    address: address as u64,
                    flags: llvm::SymbolFlags {
                        generic: llvm::EXPORTED_CALLABLE,
                        target: 0,
                    },
                },
            })
            .collect();
        if !pairs.is_empty() {
            let unit = llvm::LLVMOrcAbsoluteSymbols(pairs.as_mut_ptr(), pairs.len());
            check(
                llvm::LLVMOrcJITDylibDefine(dylib, unit),
                "micro-kernel symbols",
            )?;
        }
        for mut object in objects {
            let buffer = std::mem::replace(&mut object.0, std::ptr::null_mut());
            check(
                llvm::LLVMOrcLLJITAddObjectFile(raw, dylib, buffer),
                "adding an object",
            )?;
        }
    }
    Ok(jit)
}

/// The CPU name LLVM detects for this host (for logs).
pub fn host_cpu() -> String {
    let host = Host::detect();
    host.cpu.to_string_lossy().into_owned()
}

/// Calls a kernel's C interface with one pointer per argument.
///
/// # Safety
///
/// `kernel` must be live, and `args` must be exactly its `arity` (at most [`MAX_ARITY`])
/// valid descriptor pointers.
pub unsafe fn call(kernel: CompiledKernel, args: &[*mut c_void]) {
    debug_assert_eq!(args.len(), kernel.arity, "kernel arity");
    let (address, a) = (kernel.address, args);
    macro_rules! arity {
        ($($index:literal)*) => {{
            type Function = unsafe extern "C" fn($(arity!(@pointer $index)),*);
            // SAFETY: the address is a compiled function with this many pointer arguments.
            unsafe { std::mem::transmute::<usize, Function>(address)($(a[$index]),*) }
        }};
        (@pointer $index:literal) => { *mut c_void };
    }
    match a.len() {
        0 => arity!(),
        1 => arity!(0),
        2 => arity!(0 1),
        3 => arity!(0 1 2),
        4 => arity!(0 1 2 3),
        5 => arity!(0 1 2 3 4),
        6 => arity!(0 1 2 3 4 5),
        7 => arity!(0 1 2 3 4 5 6),
        8 => arity!(0 1 2 3 4 5 6 7),
        9 => arity!(0 1 2 3 4 5 6 7 8),
        10 => arity!(0 1 2 3 4 5 6 7 8 9),
        11 => arity!(0 1 2 3 4 5 6 7 8 9 10),
        12 => arity!(0 1 2 3 4 5 6 7 8 9 10 11),
        13 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12),
        14 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13),
        15 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14),
        16 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
        17 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16),
        18 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17),
        19 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18),
        20 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19),
        21 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20),
        22 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21),
        23 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22),
        24 => arity!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23),
        // Arities above MAX_ARITY are refused when the program is compiled.
        _ => {}
    }
}

/// The largest number of arguments a kernel may take.
pub const MAX_ARITY: usize = 24;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cpu_is_detected() {
        assert!(!host_cpu().is_empty());
    }
}
