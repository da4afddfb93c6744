//! The parts of LLVM's C API the JIT needs that `mlir-sys` does not bind (target machines,
//! the new pass manager, ORC's LLJIT), declared here against the LLVM libraries `mlir-sys`
//! already links, plus small owned wrappers that free what they hold.
//!
//! Invariant: every pointer a wrapper holds is non-null and freed exactly once, by its `Drop`.

use std::ffi::{c_char, c_void, CStr, CString};

use mlir_sys::{LLVMDisposeMessage, LLVMMemoryBufferRef, LLVMModuleRef};

/// `LLVMTargetRef`.
pub type TargetRef = *mut c_void;
/// `LLVMTargetMachineRef`.
pub type TargetMachineRef = *mut c_void;
/// `LLVMTargetDataRef`.
pub type TargetDataRef = *mut c_void;
/// `LLVMErrorRef`.
pub type ErrorRef = *mut c_void;
/// `LLVMPassBuilderOptionsRef`.
pub type PassOptionsRef = *mut c_void;
/// `LLVMOrcLLJITRef`.
pub type LljitRef = *mut c_void;
/// `LLVMOrcJITDylibRef`.
pub type DylibRef = *mut c_void;
/// `LLVMOrcSymbolStringPoolEntryRef`.
pub type SymbolRef = *mut c_void;
/// `LLVMOrcMaterializationUnitRef`.
pub type UnitRef = *mut c_void;
/// `LLVMOrcDefinitionGeneratorRef`.
pub type GeneratorRef = *mut c_void;

/// `LLVMCodeGenLevelAggressive`.
pub const CODEGEN_AGGRESSIVE: u32 = 3;
/// `LLVMRelocPIC`: calls out of JIT code (libm, micro-kernels) go through stubs.
pub const RELOC_PIC: u32 = 2;
/// `LLVMCodeModelSmall`.
pub const CODE_MODEL_SMALL: u32 = 3;
/// `LLVMObjectFile`.
pub const OBJECT_FILE: u32 = 1;
/// `LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable`.
pub const EXPORTED_CALLABLE: u8 = 1 | 4;

/// `LLVMJITSymbolFlags`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SymbolFlags {
    /// Generic flags.
    pub generic: u8,
    /// Target flags.
    pub target: u8,
}

/// `LLVMJITEvaluatedSymbol`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EvaluatedSymbol {
    /// Address in this process.
    pub address: u64,
    /// Linkage flags.
    pub flags: SymbolFlags,
}

/// `LLVMOrcCSymbolMapPair`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SymbolMapPair {
    /// Interned (mangled) name.
    pub name: SymbolRef,
    /// The definition.
    pub symbol: EvaluatedSymbol,
}

extern "C" {
    pub fn LLVMGetDefaultTargetTriple() -> *mut c_char;
    pub fn LLVMGetHostCPUName() -> *mut c_char;
    pub fn LLVMGetHostCPUFeatures() -> *mut c_char;
    pub fn LLVMGetTargetFromTriple(
        triple: *const c_char,
        target: *mut TargetRef,
        error: *mut *mut c_char,
    ) -> i32;
    pub fn LLVMCreateTargetMachine(
        target: TargetRef,
        triple: *const c_char,
        cpu: *const c_char,
        features: *const c_char,
        level: u32,
        reloc: u32,
        code_model: u32,
    ) -> TargetMachineRef;
    pub fn LLVMDisposeTargetMachine(machine: TargetMachineRef);
    pub fn LLVMCreateTargetDataLayout(machine: TargetMachineRef) -> TargetDataRef;
    pub fn LLVMDisposeTargetData(data: TargetDataRef);
    pub fn LLVMSetModuleDataLayout(module: LLVMModuleRef, data: TargetDataRef);
    pub fn LLVMTargetMachineEmitToMemoryBuffer(
        machine: TargetMachineRef,
        module: LLVMModuleRef,
        kind: u32,
        error: *mut *mut c_char,
        buffer: *mut LLVMMemoryBufferRef,
    ) -> i32;

    pub fn LLVMCreatePassBuilderOptions() -> PassOptionsRef;
    pub fn LLVMPassBuilderOptionsSetLoopVectorization(options: PassOptionsRef, value: i32);
    pub fn LLVMPassBuilderOptionsSetSLPVectorization(options: PassOptionsRef, value: i32);
    pub fn LLVMPassBuilderOptionsSetLoopUnrolling(options: PassOptionsRef, value: i32);
    pub fn LLVMPassBuilderOptionsSetLoopInterleaving(options: PassOptionsRef, value: i32);
    pub fn LLVMDisposePassBuilderOptions(options: PassOptionsRef);
    pub fn LLVMRunPasses(
        module: LLVMModuleRef,
        passes: *const c_char,
        machine: TargetMachineRef,
        options: PassOptionsRef,
    ) -> ErrorRef;

    pub fn LLVMGetErrorMessage(error: ErrorRef) -> *mut c_char;
    pub fn LLVMDisposeErrorMessage(message: *mut c_char);

    pub fn LLVMOrcCreateLLJIT(result: *mut LljitRef, builder: *mut c_void) -> ErrorRef;
    pub fn LLVMOrcDisposeLLJIT(jit: LljitRef) -> ErrorRef;
    pub fn LLVMOrcLLJITGetMainJITDylib(jit: LljitRef) -> DylibRef;
    pub fn LLVMOrcLLJITGetGlobalPrefix(jit: LljitRef) -> c_char;
    pub fn LLVMOrcLLJITMangleAndIntern(jit: LljitRef, name: *const c_char) -> SymbolRef;
    pub fn LLVMOrcLLJITAddObjectFile(
        jit: LljitRef,
        dylib: DylibRef,
        buffer: LLVMMemoryBufferRef,
    ) -> ErrorRef;
    pub fn LLVMOrcLLJITLookup(jit: LljitRef, result: *mut u64, name: *const c_char) -> ErrorRef;
    pub fn LLVMOrcAbsoluteSymbols(symbols: *mut SymbolMapPair, count: usize) -> UnitRef;
    pub fn LLVMOrcJITDylibDefine(dylib: DylibRef, unit: UnitRef) -> ErrorRef;
    pub fn LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        result: *mut GeneratorRef,
        global_prefix: c_char,
        filter: *mut c_void,
        filter_context: *mut c_void,
    ) -> ErrorRef;
    pub fn LLVMOrcJITDylibAddGenerator(dylib: DylibRef, generator: GeneratorRef);

    fn LLVMLoadLibraryPermanently(file: *const c_char) -> i32;
}

/// glibc's vector math library (`_ZGVeN16v_expf`, `_ZGVdN8v_logf`, ...), which the JIT calls
/// in place of the vector math intrinsics LLVM would otherwise expand into one scalar libm
/// call per lane (see `vector_math`).
const VECTOR_MATH_LIBRARY: &str = "libmvec.so.1";

/// Whether [`VECTOR_MATH_LIBRARY`] is loaded in this process.
static VECTOR_MATH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True when glibc's vector math library is loaded (after [`initialize_native_target`]).
pub fn vector_math_loaded() -> bool {
    VECTOR_MATH.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(target_arch = "x86_64")]
extern "C" {
    fn LLVMInitializeX86TargetInfo();
    fn LLVMInitializeX86Target();
    fn LLVMInitializeX86TargetMC();
    fn LLVMInitializeX86AsmPrinter();
}

#[cfg(target_arch = "aarch64")]
extern "C" {
    fn LLVMInitializeAArch64TargetInfo();
    fn LLVMInitializeAArch64Target();
    fn LLVMInitializeAArch64TargetMC();
    fn LLVMInitializeAArch64AsmPrinter();
}

/// Registers the host's LLVM target, and loads glibc's vector math library when the process
/// can (once per process).
pub fn initialize_native_target() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: LLVM's target initialisers are idempotent registrations, run once here; the
    // library name outlives the call.
    ONCE.call_once(|| unsafe {
        let library = c_string(VECTOR_MATH_LIBRARY);
        let loaded = LLVMLoadLibraryPermanently(library.as_ptr()) == 0;
        VECTOR_MATH.store(loaded, std::sync::atomic::Ordering::Relaxed);
        #[cfg(target_arch = "x86_64")]
        {
            LLVMInitializeX86TargetInfo();
            LLVMInitializeX86Target();
            LLVMInitializeX86TargetMC();
            LLVMInitializeX86AsmPrinter();
        }
        #[cfg(target_arch = "aarch64")]
        {
            LLVMInitializeAArch64TargetInfo();
            LLVMInitializeAArch64Target();
            LLVMInitializeAArch64TargetMC();
            LLVMInitializeAArch64AsmPrinter();
        }
    });
}

/// Takes ownership of an LLVM message string, returning its text.
///
/// # Safety
///
/// `message` must be null or a string LLVM allocated for `LLVMDisposeMessage`.
pub unsafe fn take_message(message: *mut c_char) -> String {
    if message.is_null() {
        return String::new();
    }
    // SAFETY: a non-null LLVM message is a NUL-terminated string, freed once here.
    unsafe {
        let text = CStr::from_ptr(message).to_string_lossy().into_owned();
        LLVMDisposeMessage(message);
        text
    }
}

/// `Ok` for a null error, else its message (the error is consumed).
///
/// # Safety
///
/// `error` must be null or an unconsumed `LLVMErrorRef`.
pub unsafe fn check(error: ErrorRef, what: &str) -> Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: `LLVMGetErrorMessage` consumes the error; its message is freed once here.
    unsafe {
        let message = LLVMGetErrorMessage(error);
        let text = CStr::from_ptr(message).to_string_lossy().into_owned();
        LLVMDisposeErrorMessage(message);
        Err(format!("{what}: {text}"))
    }
}

/// A C string for an LLVM call; names never hold NUL, so one is replaced if present.
pub fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "?")).unwrap_or_default()
}

/// The host's target triple, CPU name and CPU features.
pub struct Host {
    /// Target triple.
    pub triple: CString,
    /// CPU name, e.g. `rocketlake`.
    pub cpu: CString,
    /// Feature string, e.g. `+avx512f,...`.
    pub features: CString,
}

impl Host {
    /// Detects the host.
    pub fn detect() -> Self {
        // SAFETY: each call returns a fresh LLVM message string, owned by `take_message`.
        let (triple, cpu, features) = unsafe {
            (
                take_message(LLVMGetDefaultTargetTriple()),
                take_message(LLVMGetHostCPUName()),
                take_message(LLVMGetHostCPUFeatures()),
            )
        };
        Host {
            triple: c_string(&triple),
            cpu: c_string(&cpu),
            features: c_string(&features),
        }
    }
}

/// An owned target machine for the host, at `-O3` code generation.
pub struct TargetMachine {
    /// The machine.
    pub raw: TargetMachineRef,
}

impl TargetMachine {
    /// Creates a target machine for `host`.
    ///
    /// # Errors
    ///
    /// LLVM's message when the triple names no registered target.
    pub fn new(host: &Host) -> Result<Self, String> {
        initialize_native_target();
        let mut target = std::ptr::null_mut();
        let mut error = std::ptr::null_mut();
        // SAFETY: the strings are NUL-terminated; out-pointers are valid.
        let failed =
            unsafe { LLVMGetTargetFromTriple(host.triple.as_ptr(), &mut target, &mut error) };
        if failed != 0 {
            // SAFETY: on failure `error` is an LLVM message.
            return Err(format!("no LLVM target for the host: {}", unsafe {
                take_message(error)
            }));
        }
        // SAFETY: `target` is a registered target; the strings outlive the call.
        let raw = unsafe {
            LLVMCreateTargetMachine(
                target,
                host.triple.as_ptr(),
                host.cpu.as_ptr(),
                host.features.as_ptr(),
                CODEGEN_AGGRESSIVE,
                RELOC_PIC,
                CODE_MODEL_SMALL,
            )
        };
        if raw.is_null() {
            return Err("LLVM could not create a target machine for the host".into());
        }
        Ok(TargetMachine { raw })
    }
}

impl Drop for TargetMachine {
    fn drop(&mut self) {
        // SAFETY: `raw` is non-null and disposed only here.
        unsafe { LLVMDisposeTargetMachine(self.raw) }
    }
}
