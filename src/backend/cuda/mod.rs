//! CUDA backend: hand-written kernels (`kernels/*.cu`, embedded in the library) compiled by NVRTC
//! at first use for the device's own architecture and cached on disk, launched through cudarc.
//!
//! Nothing here needs CUDA at build time: cudarc loads `libcuda`, `libnvrtc` and `libcublas` when
//! first used. Asking for a device on a machine without a driver or GPU is an [`Error::Device`]
//! (never a panic). NVRTC is found on the loader path (`LD_LIBRARY_PATH`, ldconfig) or in
//! `RSTAR_CUDA_LIB_DIR`; the CUDA headers it needs (`cuda_bf16.h`, `crt/mma.h`) in
//! `RSTAR_CUDA_INCLUDE`, `$CUDA_HOME/include`, `/usr/local/cuda/include`, or the `include` folder
//! beside the NVRTC library (the layout of NVIDIA's PyPI wheels).
//!
//! [`ops`] wraps each kernel in a typed launch and [`kv`] holds the K/V store's device memory;
//! the decoder's CUDA forward pass (src/model/decoder/cuda.rs) runs on them.

pub mod kv;
pub mod ops;

pub use kv::DevKv;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};

use crate::error::{Error, Result};

/// Kernel sources, compiled one NVRTC program per file with [`PRELUDE`] prepended.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "elementwise",
        include_str!("../../../kernels/elementwise.cu"),
    ),
    ("gemv", include_str!("../../../kernels/gemv.cu")),
    ("gemm", include_str!("../../../kernels/gemm.cu")),
    ("attention", include_str!("../../../kernels/attention.cu")),
    ("sampling", include_str!("../../../kernels/sampling.cu")),
];

/// Definitions shared by every kernel file.
pub const PRELUDE: &str = include_str!("../../../kernels/prelude.cuh");

fn dev_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Device(format!("{what}: {e:?}"))
}

/// Loads NVRTC (from the loader path or `RSTAR_CUDA_LIB_DIR`); an error says where it looked.
pub fn ensure_nvrtc() -> Result<()> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            // SAFETY: is_culib_present only tries dlopen on cudarc's candidate names.
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                return Ok(());
            }
            let Some(dir) = std::env::var_os("RSTAR_CUDA_LIB_DIR") else {
                return Err(
                    "NVRTC (libnvrtc.so) not found on the loader path; install the \
                            nvidia-cuda-nvrtc wheel or a CUDA toolkit and set LD_LIBRARY_PATH or \
                            RSTAR_CUDA_LIB_DIR"
                        .into(),
                );
            };
            let dir = PathBuf::from(dir);
            // The builtins library must be loaded first and globally, or NVRTC fails to find it.
            for name in ["libnvrtc-builtins.so.13.0", "libnvrtc.so.13"] {
                let p = dir.join(name);
                // SAFETY: loading NVIDIA's NVRTC libraries runs only their initialisers; the
                // handles are leaked on purpose so the libraries stay loaded for the process.
                match unsafe {
                    libloading::os::unix::Library::open(
                        Some(&p),
                        libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                    )
                } {
                    Ok(lib) => std::mem::forget(lib),
                    Err(e) => return Err(format!("{}: {e}", p.display())),
                }
            }
            // SAFETY: as above.
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                Ok(())
            } else {
                Err(format!("NVRTC not loadable from {}", dir.display()))
            }
        })
        .clone()
        .map_err(Error::Device)
}

/// Folders holding `cuda_bf16.h` and `crt/mma.h` for NVRTC.
pub fn include_dirs() -> Result<Vec<String>> {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os("RSTAR_CUDA_INCLUDE") {
        cands.extend(std::env::split_paths(&v));
    }
    if let Some(h) = std::env::var_os("CUDA_HOME").or_else(|| std::env::var_os("CUDA_PATH")) {
        cands.push(PathBuf::from(h).join("include"));
    }
    if let Some(d) = std::env::var_os("RSTAR_CUDA_LIB_DIR") {
        cands.push(PathBuf::from(d).join("../include"));
    }
    if let Some(ld) = std::env::var_os("LD_LIBRARY_PATH") {
        cands.extend(std::env::split_paths(&ld).map(|p| p.join("../include")));
    }
    cands.push(PathBuf::from("/usr/local/cuda/include"));
    let has = |d: &Path, f: &str| d.join(f).is_file();
    let bf16 = cands.iter().find(|d| has(d, "cuda_bf16.h"));
    let mma = cands.iter().find(|d| has(d, "crt/mma.h"));
    match (bf16, mma) {
        (Some(a), Some(b)) => {
            let mut v = vec![a.display().to_string()];
            if b != a {
                v.push(b.display().to_string());
            }
            Ok(v)
        }
        _ => Err(Error::Device(format!(
            "CUDA headers (cuda_bf16.h, crt/mma.h) not found in {}; set RSTAR_CUDA_INCLUDE",
            cands
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A kernel file compiled to a CUBIN for one architecture, with NVRTC's log (ptxas `-v` report).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub cubin: Vec<u8>,
    pub log: String,
}

impl Compiled {
    /// Kernels whose ptxas report shows spill stores or loads (`(kernel, report line)`).
    pub fn spills(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut func = String::new();
        for line in self.log.lines() {
            if let Some(i) = line.find("Compiling entry function '") {
                let rest = &line[i + 26..];
                func = rest.split('\'').next().unwrap_or("").to_string();
            }
            if line.contains("bytes spill stores") {
                let spilled = line
                    .split(',')
                    .filter(|p| p.contains("spill"))
                    .any(|p| p.split_whitespace().next() != Some("0"));
                if spilled {
                    out.push((func.clone(), line.trim().to_string()));
                }
            }
        }
        out
    }
}

/// Compiles kernel file `name` for `arch` (e.g. "sm_90") to a CUBIN with NVRTC.
pub fn compile(name: &str, arch: &str) -> Result<Compiled> {
    use cudarc::nvrtc::{result, sys};
    ensure_nvrtc()?;
    let src = SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| Error::InvalidArgument(format!("no kernel file `{name}`")))?
        .1;
    let full = format!("#line 1 \"prelude.cuh\"\n{PRELUDE}\n#line 1 \"{name}.cu\"\n{src}");
    let code = std::ffi::CString::new(full)
        .map_err(|_| Error::Internal("kernel source holds a NUL byte".into()))?;
    let fname = std::ffi::CString::new(format!("{name}.cu")).expect("no NUL in name");
    let prog = result::create_program(&code, Some(&fname)).map_err(|e| dev_err("nvrtc", e))?;
    let mut opts = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
        "--ptxas-options=-v".to_string(),
        "-default-device".to_string(),
    ];
    for d in include_dirs()? {
        opts.push(format!("--include-path={d}"));
    }
    let read_log = || -> String {
        // SAFETY: prog is a live program created above.
        match unsafe { result::get_program_log(prog) } {
            Ok(v) => {
                let bytes: Vec<u8> = v.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Err(_) => String::new(),
        }
    };
    // SAFETY: prog is live; options are valid C strings built by cudarc.
    let compiled = unsafe { result::compile_program(prog, &opts) };
    let log = read_log();
    let out = compiled
        .map_err(|e| {
            Error::Device(format!(
                "compiling kernels/{name}.cu for {arch}: {e:?}\n{log}"
            ))
        })
        .and_then(|_| {
            let mut size = 0usize;
            // SAFETY: prog compiled successfully; size is a valid out pointer.
            unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }
                .result()
                .map_err(|e| dev_err("nvrtcGetCUBINSize", e))?;
            let mut cubin = vec![0u8; size];
            // SAFETY: cubin has exactly the size NVRTC reported.
            unsafe { sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut _) }
                .result()
                .map_err(|e| dev_err("nvrtcGetCUBIN", e))?;
            Ok(Compiled {
                cubin,
                log: log.clone(),
            })
        });
    // SAFETY: prog is destroyed once, after its last use.
    let _ = unsafe { result::destroy_program(prog) };
    out
}

/// Disk cache of compiled kernels: `$RSTAR_CACHE_DIR` or `~/.cache/rstar`, then `kernels/`.
fn cache_path(name: &str, arch: &str) -> Option<PathBuf> {
    let base = std::env::var_os("RSTAR_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rstar")))?;
    let src = SOURCES.iter().find(|(n, _)| *n == name)?.1;
    // FNV-1a over the prelude and the source: a changed kernel never loads a stale binary.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in PRELUDE.bytes().chain(src.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    Some(
        base.join("kernels")
            .join(format!("{name}-{arch}-{h:016x}.cubin")),
    )
}

/// A CUDA device with its stream, cuBLAS handle and loaded kernels.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    pub arch: String,
    pub sm_count: usize,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<&'static str, CudaFunction>>,
    /// Dynamic shared memory limit raised so far, per kernel.
    smem_limits: Mutex<HashMap<&'static str, u32>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("ordinal", &self.ctx.ordinal())
            .field("arch", &self.arch)
            .finish()
    }
}

impl Gpu {
    /// Opens CUDA device `ordinal`. Without a driver, a GPU or NVRTC this is an [`Error::Device`].
    pub fn open(ordinal: usize) -> Result<Arc<Gpu>> {
        // SAFETY: only probes dlopen candidates.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Device(
                "no CUDA driver (libcuda.so) on this machine; use --device cpu".into(),
            ));
        }
        ensure_nvrtc()?;
        let ctx = match std::panic::catch_unwind(|| CudaContext::new(ordinal)) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(dev_err(&format!("cuda:{ordinal}"), e)),
            Err(_) => return Err(Error::Device("the CUDA driver failed to load".into())),
        };
        // One stream, in-order: cudarc's per-buffer event tracking is not needed.
        // SAFETY: called before any allocation on this context.
        unsafe { ctx.disable_event_tracking() };
        use cudarc::driver::sys::CUdevice_attribute as A;
        let major = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(|e| dev_err("device attribute", e))?;
        let minor = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
            .map_err(|e| dev_err("device attribute", e))?;
        let sm_count = ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| dev_err("device attribute", e))? as usize;
        // A stream of its own: the legacy default stream cannot be captured into CUDA graphs.
        let stream = ctx.new_stream().map_err(|e| dev_err("stream", e))?;
        // SAFETY: only probes dlopen candidates.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::Device("cuBLAS (libcublas.so) not found".into()));
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| dev_err("cuBLAS", e))?;
        Ok(Arc::new(Gpu {
            ctx,
            stream,
            blas,
            arch: format!("sm_{major}{minor}"),
            sm_count,
            modules: Mutex::new(HashMap::new()),
            funcs: Mutex::new(HashMap::new()),
            smem_limits: Mutex::new(HashMap::new()),
        }))
    }

    /// The module of kernel file `file`, compiled (or read from the disk cache) on first use.
    fn module(&self, file: &'static str) -> Result<Arc<CudaModule>> {
        if let Some(m) = self.modules.lock().expect("module lock").get(file) {
            return Ok(m.clone());
        }
        let path = cache_path(file, &self.arch);
        let cubin = match path.as_ref().and_then(|p| std::fs::read(p).ok()) {
            Some(b) => b,
            None => {
                let c = compile(file, &self.arch)?;
                if let Some(p) = &path {
                    // A failed cache write only costs a recompile next time.
                    if let Some(d) = p.parent() {
                        let _ = std::fs::create_dir_all(d);
                    }
                    let tmp = p.with_extension("tmp");
                    if std::fs::write(&tmp, &c.cubin).is_ok() {
                        let _ = std::fs::rename(&tmp, p);
                    }
                }
                c.cubin
            }
        };
        let m = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
            .map_err(|e| dev_err(&format!("loading kernels/{file}.cu"), e))?;
        self.modules
            .lock()
            .expect("module lock")
            .insert(file, m.clone());
        Ok(m)
    }

    /// Kernel `name` from kernel file `file`.
    pub fn func(&self, file: &'static str, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.funcs.lock().expect("func lock").get(name) {
            return Ok(f.clone());
        }
        let f = self
            .module(file)?
            .load_function(name)
            .map_err(|e| dev_err(&format!("kernel {name}"), e))?;
        self.funcs
            .lock()
            .expect("func lock")
            .insert(name, f.clone());
        Ok(f)
    }

    /// True (and remembered) when kernel `name` needs its shared memory limit raised to `bytes`.
    pub(crate) fn raise_smem_limit(&self, name: &'static str, bytes: u32) -> bool {
        let mut m = self.smem_limits.lock().expect("smem lock");
        let cur = m.entry(name).or_insert(0);
        if *cur >= bytes {
            return false;
        }
        *cur = bytes;
        true
    }

    /// Waits for all queued work.
    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| dev_err("synchronize", e))
    }
}
