//! The matrix-product backend of the frozen-linear kernels, chosen at run time:
//! the gemm crate (built in; it dispatches AVX-512 / AVX2 / scalar itself) or a
//! system BLAS loaded with `dlopen` when present (OpenBLAS or BLIS, Debian's
//! `libopenblas0-pthread` / `libblis4-pthread`), to measure their hand-tuned
//! kernels against the gemm crate's on each CPU kind (`cargo bench --bench
//! gemm`) and to run on them (`ATTEMPT_GEMM`). Nothing links against a BLAS at
//! build time, so a machine without one runs exactly as before.
//!
//! The bindings are written here rather than taken from a `-sys` crate: those
//! link the library at build time (or build it from source), which would make
//! an optional, run-time choice a hard dependency. What is bound is one CBLAS
//! function and one thread-count setter, with the C signatures below.

use std::ffi::{c_float, c_int};
use std::sync::OnceLock;

/// Environment variable that forces a backend: `gemm`, `openblas` or `blis`
/// (unset or `auto`: [`auto_backend`], the one measured fastest).
pub const GEMM_BACKEND_VAR: &str = "ATTEMPT_GEMM";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmBackend {
    /// The gemm crate, compiled in.
    Gemm,
    OpenBlas,
    Blis,
}

impl GemmBackend {
    pub const ALL: [GemmBackend; 3] = [GemmBackend::Gemm, GemmBackend::OpenBlas, GemmBackend::Blis];

    pub fn as_str(self) -> &'static str {
        match self {
            GemmBackend::Gemm => "gemm",
            GemmBackend::OpenBlas => "openblas",
            GemmBackend::Blis => "blis",
        }
    }

    /// The shared library a system backend is loaded from, and the Debian
    /// package that provides it.
    fn library(self) -> Option<(&'static str, &'static str)> {
        match self {
            GemmBackend::Gemm => None,
            GemmBackend::OpenBlas => Some(("libopenblas.so.0", "libopenblas0-pthread")),
            GemmBackend::Blis => Some(("libblis.so.4", "libblis4-pthread")),
        }
    }
}

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
    _library: libloading::Library,
}

impl SystemBlas {
    fn load(backend: GemmBackend, threads: usize) -> Result<SystemBlas, String> {
        let Some((file, package)) = backend.library() else {
            return Err(format!("{} is built in, not a system library", backend.as_str()));
        };
        // SAFETY: loading runs the library's initialisers; OpenBLAS and BLIS
        // have no initialisers with preconditions on the caller.
        let library = unsafe { libloading::Library::new(file) }
            .map_err(|e| format!("cannot load {file} ({e}); install Debian's {package}"))?;
        // SAFETY: the symbol has the CBLAS signature of `CblasSgemm`.
        let sgemm = unsafe { library.get::<CblasSgemm>(b"cblas_sgemm\0") }
            .map(|f| *f)
            .map_err(|e| format!("{file} has no cblas_sgemm ({e})"))?;
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
                GemmBackend::Gemm => {}
            }
        }
        Ok(SystemBlas { sgemm, _library: library })
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
        let int = |v: usize| c_int::try_from(v).map_err(|_| format!("{v} exceeds the BLAS's 32-bit sizes"));
        let (b_rows, b_cols) = if b_transposed { (n, k) } else { (k, n) };
        // Checked again here, not only by the caller: past this point the
        // extents go to C unchecked.
        let fits = super::linear::rows_fit;
        if !fits(a.len(), m, lda, k) || !fits(b.len(), b_rows, ldb, b_cols) || !fits(c.len(), m, ldc, n) {
            return Err(format!("sgemm: [{m}, {k}] · [{k}, {n}] does not fit the given buffers"));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (mi, ni, ki, lda, ldb, ldc) =
            (int(m)?, int(n)?, int(k)?, int(lda.max(1))?, int(ldb.max(1))?, int(ldc.max(1))?);
        let beta = if accumulate { 1.0 } else { 0.0 };
        let trans_b = if b_transposed { TRANS } else { NO_TRANS };
        // SAFETY: the extents of a, b and c for these sizes and leading
        // dimensions are checked above; with beta = 0 the BLAS does not read c.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR,
                NO_TRANS,
                trans_b,
                mi,
                ni,
                ki,
                1.0,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                ldb,
                beta,
                c.as_mut_ptr(),
                ldc,
            )
        };
        Ok(())
    }
}

/// The loaded system library for `backend`, loaded once per process (and
/// the reason when it cannot be).
pub fn system_blas(backend: GemmBackend) -> Result<&'static SystemBlas, String> {
    static OPENBLAS: OnceLock<Result<SystemBlas, String>> = OnceLock::new();
    static BLIS: OnceLock<Result<SystemBlas, String>> = OnceLock::new();
    let slot = match backend {
        GemmBackend::Gemm => return Err("gemm is built in, not a system library".into()),
        GemmBackend::OpenBlas => &OPENBLAS,
        GemmBackend::Blis => &BLIS,
    };
    slot.get_or_init(|| SystemBlas::load(backend, candle_core::utils::get_num_threads())).as_ref().map_err(Clone::clone)
}

/// The backends this machine can run now: gemm always, a system BLAS when
/// its library loads.
pub fn available_backends() -> Vec<GemmBackend> {
    GemmBackend::ALL.into_iter().filter(|b| *b == GemmBackend::Gemm || system_blas(*b).is_ok()).collect()
}

/// The default: the gemm crate, on every CPU kind measured so far
/// (`cargo bench --bench gemm`, figures in README). On a Xeon with AVX-512
/// and AMX it ran the step's products 1.07× PyTorch's (MKL) time against
/// OpenBLAS 0.3.21's 1.14× and BLIS 0.9's 1.70×, and a whole ATTEMPT step was
/// the same with OpenBLAS as with gemm (707 vs 712 ms). A CPU kind where a
/// system BLAS measures faster gets its case here.
pub fn auto_backend() -> GemmBackend {
    GemmBackend::Gemm
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
            Some(b) => match system_blas(b) {
                Ok(_) => b,
                Err(why) => panic!("{GEMM_BACKEND_VAR}={v}: {why}; or unset {GEMM_BACKEND_VAR}"),
            },
            None => panic!("{GEMM_BACKEND_VAR}={v}: name one of gemm, openblas, blis, auto"),
        },
        _ => auto_backend(),
    })
}
