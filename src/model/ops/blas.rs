//! The matrix-product backend of the frozen-linear kernels, chosen at run time:
//! the gemm crate (built in; it dispatches AVX-512 / AVX2 / scalar itself) or a
//! system BLAS loaded with `dlopen` when present (OpenBLAS or BLIS, Debian's
//! `libopenblas0-pthread` / `libblis4-pthread`; Intel's oneMKL, PyPI's `mkl`),
//! to measure their hand-tuned kernels against the gemm crate's on each CPU
//! kind (`cargo bench --bench gemm`) and to run on them (`ATTEMPT_GEMM`).
//! Nothing links against a BLAS at build time, so a machine without one runs
//! exactly as before.
//!
//! The bindings are written here rather than taken from a `-sys` crate: those
//! link the library at build time (or build it from source), which would make
//! an optional, run-time choice a hard dependency. What is bound is one CBLAS
//! function and one thread-count setter, with the C signatures below.

use std::ffi::{c_float, c_int};
use std::sync::OnceLock;

/// Environment variable that forces a backend: `gemm`, `avx2`, `openblas`,
/// `blis`, `mkl` or `bf16` (unset or `auto`: [`auto_backend`], the one
/// measured fastest on this CPU kind; never `bf16`, which rounds).
pub const GEMM_BACKEND_VAR: &str = "ATTEMPT_GEMM";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmBackend {
    /// The gemm crate, compiled in.
    Gemm,
    /// attempt-pkg's own AVX2 + FMA kernel (`sgemm_avx2`), compiled in; only
    /// on CPUs that have both.
    Avx2,
    /// attempt-pkg's own bf16 kernel (`sgemm_bf16`: operands rounded to
    /// bf16, fp32 sums), compiled in; only on CPUs with AVX512-BF16, and only
    /// when asked for: its products are not fp32's.
    Bf16,
    OpenBlas,
    Blis,
    /// Intel oneMKL, single-threaded inside, run on candle's threads by rows.
    Mkl,
}

impl GemmBackend {
    pub const ALL: [GemmBackend; 6] = [
        GemmBackend::Gemm,
        GemmBackend::Avx2,
        GemmBackend::Bf16,
        GemmBackend::OpenBlas,
        GemmBackend::Blis,
        GemmBackend::Mkl,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GemmBackend::Gemm => "gemm",
            GemmBackend::Avx2 => "avx2",
            GemmBackend::Bf16 => "bf16",
            GemmBackend::OpenBlas => "openblas",
            GemmBackend::Blis => "blis",
            GemmBackend::Mkl => "mkl",
        }
    }

    /// What the products compute in: `bf16` operands for [`GemmBackend::Bf16`]
    /// (fp32 sums), `fp32` for every other backend.
    pub fn precision(self) -> &'static str {
        if self == GemmBackend::Bf16 {
            "bf16"
        } else {
            "fp32"
        }
    }

    /// The shared libraries a system backend may be loaded from (tried in
    /// order), and how to install one.
    fn library(self) -> Option<(&'static [&'static str], &'static str)> {
        match self {
            GemmBackend::Gemm | GemmBackend::Avx2 | GemmBackend::Bf16 => None,
            GemmBackend::OpenBlas => Some((&["libopenblas.so.0"], "install Debian's libopenblas0-pthread")),
            GemmBackend::Blis => Some((&["libblis.so.4"], "install Debian's libblis4-pthread")),
            GemmBackend::Mkl => Some((
                &["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"],
                "`pip install mkl` into the active virtual environment (or put the lib folder of one that has it on LD_LIBRARY_PATH)",
            )),
        }
    }
}

/// Where a library that pip or conda installed lives: the `lib` folder of the
/// active virtual environment or conda environment, which the dynamic loader
/// does not search by itself.
fn environment_lib_dirs() -> Vec<std::path::PathBuf> {
    ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(|var| std::env::var_os(var).filter(|v| !v.is_empty()))
        .map(|prefix| std::path::PathBuf::from(prefix).join("lib"))
        .collect()
}

/// The first of `files` that loads: by name (the loader's own search path),
/// then from [`environment_lib_dirs`].
fn open_library(files: &[&str], install: &str) -> Result<libloading::Library, String> {
    let mut candidates: Vec<std::ffi::OsString> = files.iter().map(|f| f.into()).collect();
    for dir in environment_lib_dirs() {
        candidates.extend(files.iter().map(|f| dir.join(f).into_os_string()));
    }
    let mut first_error = None;
    for candidate in &candidates {
        // SAFETY: loading runs the library's initialisers; OpenBLAS, BLIS and
        // oneMKL have no initialisers with preconditions on the caller.
        match unsafe { libloading::Library::new(candidate) } {
            Ok(library) => return Ok(library),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let why = first_error.map(|e| e.to_string()).unwrap_or_default();
    Err(format!("cannot load {} ({why}); {install}", files.join(" or ")))
}

/// oneMKL's `MKL_Set_Threading_Layer` value for its sequential layer.
const MKL_THREADING_SEQUENTIAL: c_int = 1;

/// The fewest rows a thread's share of a product gets when it is split.
const MIN_ROWS_PER_THREAD: usize = 64;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// `cblas_sgemm` with 32-bit integers (the LP64 interface both Debian
/// libraries export under this name).
type CblasSgemm = unsafe extern "C" fn(
    layout: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: c_float,
    a: *const c_float,
    lda: c_int,
    b: *const c_float,
    ldb: c_int,
    beta: c_float,
    c: *mut c_float,
    ldc: c_int,
);

/// A loaded system BLAS. The library handle is kept for the life of the
/// process (the function pointer points into it).
pub struct SystemBlas {
    sgemm: CblasSgemm,
    /// Threads to split the rows of a product over (1: the library threads
    /// itself, or the machine has one).
    row_threads: usize,
    _library: libloading::Library,
}

impl SystemBlas {
    fn load(backend: GemmBackend, threads: usize) -> Result<SystemBlas, String> {
        let Some((files, install)) = backend.library() else {
            return Err(format!("{} is built in, not a system library", backend.as_str()));
        };
        let library = open_library(files, install)?;
        let file = files[0];
        // SAFETY: the symbol has the CBLAS signature of `CblasSgemm`.
        let sgemm = unsafe { library.get::<CblasSgemm>(b"cblas_sgemm\0") }
            .map(|f| *f)
            .map_err(|e| format!("{file} has no cblas_sgemm ({e})"))?;
        let mut row_threads = 1;
        if backend == GemmBackend::Mkl {
            // oneMKL's own threads are OpenMP ones, which spin between calls
            // and fight candle's rayon threads for the cores; its sequential
            // layer run by rows on candle's threads measured 58-62 ms for the
            // step's products against 66 ms threaded (Xeon, 2 cores; README).
            // It must be chosen before the first call.
            // SAFETY: takes one int, returns the layer chosen.
            let set_layer =
                unsafe { library.get::<unsafe extern "C" fn(c_int) -> c_int>(b"MKL_Set_Threading_Layer\0") }
                    .map_err(|e| format!("{file} has no MKL_Set_Threading_Layer ({e})"))?;
            // SAFETY: as above; nothing of the library has run yet.
            let layer = unsafe { set_layer(MKL_THREADING_SEQUENTIAL) };
            if layer != MKL_THREADING_SEQUENTIAL {
                return Err(format!("{file} would not take its sequential threading layer (it answered {layer})"));
            }
            row_threads = threads.max(1);
        }
        let threads = c_int::try_from(threads.max(1)).unwrap_or(1);
        // SAFETY: both setters take one int and only change the library's
        // thread count; a library without one keeps its default.
        unsafe {
            match backend {
                GemmBackend::OpenBlas => {
                    if let Ok(set) = library.get::<unsafe extern "C" fn(c_int)>(b"openblas_set_num_threads\0") {
                        set(threads);
                    }
                }
                GemmBackend::Blis => {
                    if let Ok(set) = library.get::<unsafe extern "C" fn(i64)>(b"bli_thread_set_num_threads\0") {
                        set(i64::from(threads));
                    }
                }
                GemmBackend::Gemm | GemmBackend::Avx2 | GemmBackend::Bf16 | GemmBackend::Mkl => {}
            }
        }
        Ok(SystemBlas { sgemm, row_threads, _library: library })
    }

    /// c[m, n] = a[m, k] · b (+ c when `accumulate`), row-major with the
    /// given leading dimensions; `b` is [k, n] (ldb ≥ n) or, `b_transposed`,
    /// an [n, k] matrix read as its transpose (ldb ≥ k).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sgemm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        b_transposed: bool,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) -> Result<(), String> {
        // Checked again here, not only by the caller: the blocks below are
        // sliced from these extents.
        check_extents((m, n, k), a.len(), lda, b.len(), ldb, b_transposed, c.len(), ldc)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let threads = self.row_threads.min(m / MIN_ROWS_PER_THREAD).max(1);
        if threads > 1 {
            // Row blocks of a and c, one per thread; b is shared (read only).
            // Block i of c is rows [r0, r1), inside c[r0·ldc .. r1·ldc] (ldc ≥ n).
            let rows = m.div_ceil(threads);
            let mut results = vec![Ok(()); threads];
            rayon::scope(|scope| {
                let mut c_rest = c;
                for (i, result) in results.iter_mut().enumerate() {
                    let (r0, r1) = (i * rows, ((i + 1) * rows).min(m));
                    if r0 >= r1 {
                        break;
                    }
                    let taken = std::mem::take(&mut c_rest);
                    let (c_block, rest) =
                        if r1 < m { taken.split_at_mut((r1 - r0) * ldc) } else { (taken, &mut [][..]) };
                    c_rest = rest;
                    let a_block = &a[r0 * lda..];
                    scope.spawn(move |_| {
                        *result = self.sgemm_serial(
                            (r1 - r0, n, k),
                            a_block,
                            lda,
                            b,
                            ldb,
                            b_transposed,
                            c_block,
                            ldc,
                            accumulate,
                        );
                    });
                }
            });
            return results.into_iter().collect();
        }
        self.sgemm_serial((m, n, k), a, lda, b, ldb, b_transposed, c, ldc, accumulate)
    }

    /// [`Self::sgemm`] in one call to the library.
    #[allow(clippy::too_many_arguments)]
    fn sgemm_serial(
        &self,
        (m, n, k): (usize, usize, usize),
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        b_transposed: bool,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) -> Result<(), String> {
        let int = |v: usize| c_int::try_from(v).map_err(|_| format!("{v} exceeds the BLAS's 32-bit sizes"));
        // Checked for each block, too: past this point the extents go to C.
        check_extents((m, n, k), a.len(), lda, b.len(), ldb, b_transposed, c.len(), ldc)?;
        // The sizes must fit C's int; checked here, the call converts them.
        for v in [m, n, k, lda, ldb, ldc] {
            int(v)?;
        }
        // SAFETY: the extents of a, b and c for these sizes and leading
        // dimensions are checked above, and `c` is borrowed mutably, so no
        // one else reads or writes it; with beta = 0 the BLAS does not read c.
        unsafe {
            self.sgemm_unchecked(
                (m, n, k),
                a.as_ptr(),
                lda.max(1),
                false,
                b.as_ptr(),
                ldb.max(1),
                b_transposed,
                c.as_mut_ptr(),
                ldc.max(1),
                accumulate,
            )
        };
        Ok(())
    }

    /// Whether the library runs each call on the calling thread only, so
    /// that callers already spread over candle's threads (one attention head
    /// per task) may call it from each of them.
    pub(super) fn is_sequential(&self) -> bool {
        self.row_threads > 1 || candle_core::utils::get_num_threads() == 1
    }

    /// c[m, n] = a · b (+ c when `accumulate`), the one call into the
    /// library: row-major with leading dimensions, `a` [m, k] (or, with
    /// `a_transposed`, a [k, m] matrix read as its transpose), `b` [k, n]
    /// (or, `b_transposed`, [n, k]). The per-head attention products call it
    /// directly, from each of candle's threads when [`Self::is_sequential`].
    ///
    /// # Safety
    /// The pointers must hold those matrices at those leading dimensions
    /// (each at least the row width it leads), every size must fit a C int,
    /// c must not overlap a or b, and no other thread may touch c meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sgemm_unchecked(
        &self,
        (m, n, k): (usize, usize, usize),
        a: *const f32,
        lda: usize,
        a_transposed: bool,
        b: *const f32,
        ldb: usize,
        b_transposed: bool,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // In range by the caller's contract.
        let int = |v: usize| v as c_int;
        let trans = |t: bool| if t { TRANS } else { NO_TRANS };
        let beta = if accumulate { 1.0 } else { 0.0 };
        // SAFETY: the caller's contract.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR,
                trans(a_transposed),
                trans(b_transposed),
                int(m),
                int(n),
                int(k),
                1.0,
                a,
                int(lda),
                b,
                int(ldb),
                beta,
                c,
                int(ldc),
            )
        }
    }
}

/// Whether a [m, k], b ([k, n], or [n, k] when `b_transposed`) and c [m, n]
/// fit slices of these lengths at these leading dimensions.
#[allow(clippy::too_many_arguments)]
fn check_extents(
    (m, n, k): (usize, usize, usize),
    a_len: usize,
    lda: usize,
    b_len: usize,
    ldb: usize,
    b_transposed: bool,
    c_len: usize,
    ldc: usize,
) -> Result<(), String> {
    let (b_rows, b_cols) = if b_transposed { (n, k) } else { (k, n) };
    let fits = super::linear::rows_fit;
    if !fits(a_len, m, lda, k) || !fits(b_len, b_rows, ldb, b_cols) || !fits(c_len, m, ldc, n) {
        return Err(format!("sgemm: [{m}, {k}] · [{k}, {n}] does not fit the given buffers"));
    }
    Ok(())
}

/// The loaded system library for `backend`, loaded once per process (and
/// the reason when it cannot be).
pub fn system_blas(backend: GemmBackend) -> Result<&'static SystemBlas, String> {
    static OPENBLAS: OnceLock<Result<SystemBlas, String>> = OnceLock::new();
    static BLIS: OnceLock<Result<SystemBlas, String>> = OnceLock::new();
    static MKL: OnceLock<Result<SystemBlas, String>> = OnceLock::new();
    let slot = match backend {
        GemmBackend::Gemm | GemmBackend::Avx2 | GemmBackend::Bf16 => {
            return Err(format!("{} is built in, not a system library", backend.as_str()))
        }
        GemmBackend::OpenBlas => &OPENBLAS,
        GemmBackend::Blis => &BLIS,
        GemmBackend::Mkl => &MKL,
    };
    slot.get_or_init(|| SystemBlas::load(backend, candle_core::utils::get_num_threads())).as_ref().map_err(Clone::clone)
}

/// The backends this machine can run now: gemm always, avx2 on a CPU with
/// AVX2 and FMA, bf16 on one with AVX512-BF16, a system BLAS when its
/// library loads.
pub fn available_backends() -> Vec<GemmBackend> {
    GemmBackend::ALL
        .into_iter()
        .filter(|b| match b {
            GemmBackend::Gemm => true,
            GemmBackend::Avx2 => super::sgemm_avx2::available(),
            GemmBackend::Bf16 => super::sgemm_bf16::available(),
            _ => system_blas(*b).is_ok(),
        })
        .collect()
}

/// The default: oneMKL on an Intel CPU when it loads (from the loader's path
/// or the active virtual / conda environment), else attempt-pkg's AVX2 kernel
/// on a CPU with AVX2 but no AVX-512, else the gemm crate.
/// Measured (`cargo bench --bench gemm`, `--bench attempt_step`; README): on
/// a Xeon with AVX-512 (2 cores) oneMKL ran the step's products at 0.89-1.03×
/// the gemm crate's time in four runs (PyTorch uses the same library), and
/// whole steps 1.4 % faster on the mean; OpenBLAS 0.3.21 took 6-8× (it does
/// not know that CPU model) and BLIS 0.9 2×. On AMD
/// CPUs oneMKL does not take its fast paths (PyTorch's MKL products ran at
/// half the gemm crate's speed on a Zen 5), and on an EPYC Milan the system
/// BLAS libraries were within noise of the gemm crate, so AMD keeps the
/// built-in kernels.
///
/// On a CPU with AVX2 and FMA but no AVX-512 (AMD EPYC Milan, 2026-12-04)
/// attempt-pkg's own kernel (`sgemm_avx2`) ran the products in 0.73–0.93×
/// the gemm crate's time (six runs of `cargo bench --bench gemm`), so it is
/// the default there; with AVX-512 the gemm crate's AVX-512 kernels stay.
pub fn auto_backend() -> GemmBackend {
    if cpu_is_intel() && system_blas(GemmBackend::Mkl).is_ok() {
        GemmBackend::Mkl
    } else if super::sgemm_avx2::available() && !super::cpu::has_avx512f() {
        GemmBackend::Avx2
    } else {
        GemmBackend::Gemm
    }
}

/// Whether the CPU's vendor string (CPUID leaf 0) is Intel's.
fn cpu_is_intel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
        let id = unsafe { std::arch::x86_64::__cpuid(0) };
        let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        vendor == b"GenuineIntel"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The backend the frozen-linear products run on: the one `ATTEMPT_GEMM`
/// names, else [`auto_backend`]. Read once. A backend that cannot load, or an
/// unknown name, is a hard error: a run (or a test run) must never measure
/// another backend than asked.
pub fn gemm_backend() -> GemmBackend {
    static BACKEND: OnceLock<GemmBackend> = OnceLock::new();
    *BACKEND.get_or_init(|| match std::env::var(GEMM_BACKEND_VAR) {
        Ok(v) if !v.is_empty() && v != "auto" => match GemmBackend::ALL.into_iter().find(|b| b.as_str() == v) {
            Some(GemmBackend::Gemm) => GemmBackend::Gemm,
            Some(GemmBackend::Avx2) if super::sgemm_avx2::available() => GemmBackend::Avx2,
            Some(GemmBackend::Avx2) => {
                panic!("{GEMM_BACKEND_VAR}={v}: this CPU lacks AVX2 or FMA; or unset {GEMM_BACKEND_VAR}")
            }
            Some(GemmBackend::Bf16) if super::sgemm_bf16::available() => GemmBackend::Bf16,
            Some(GemmBackend::Bf16) => panic!(
                "{GEMM_BACKEND_VAR}={v}: this CPU lacks AVX512-BF16 (AMD Zen 4 or newer, Intel Cooper Lake or newer have it); or unset {GEMM_BACKEND_VAR}"
            ),
            Some(b) => match system_blas(b) {
                Ok(_) => b,
                Err(why) => panic!("{GEMM_BACKEND_VAR}={v}: {why}; or unset {GEMM_BACKEND_VAR}"),
            },
            None => panic!("{GEMM_BACKEND_VAR}={v}: name one of gemm, avx2, bf16, openblas, blis, mkl, auto"),
        },
        _ => auto_backend(),
    })
}
