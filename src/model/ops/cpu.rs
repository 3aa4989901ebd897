//! Helpers shared by the CPU kernels.

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};

/// The contiguous f32 data a layout selects.
pub(crate) fn f32_slice<'a>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: input must be contiguous"),
    }
}

/// Runs `f` on the contiguous CPU f32 data of `tensors`, read-locked
/// meanwhile (no copies).
pub(crate) fn with_cpu_slices<R>(op: &str, tensors: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let held: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(held.len());
    for (storage, layout) in &held {
        let Storage::Cpu(cpu) = &**storage else { bail!("{op}: tensor is not on the CPU") };
        slices.push(f32_slice(op, cpu, layout)?);
    }
    f(&slices)
}

/// A raw pointer that may cross threads: each task writes a disjoint region
/// of the buffer it points into (the parallel kernels' output).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method (not field access) so closures capture the whole wrapper.
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// A buffer kept by each thread from one call of a kernel to the next (the
/// packed operands of the matrix-product kernels: a step makes ~50 such
/// products, and a fresh multi-megabyte buffer would be page-faulted and
/// zeroed every time).
pub(crate) type ThreadBuffer<T> = std::cell::RefCell<Vec<T>>;

/// This thread's buffer in `slot`, `len` long (contents unspecified: the
/// caller writes every element before reading it); hand it back with
/// [`give_thread_buffer`].
pub(crate) fn take_thread_buffer<T: Clone + Default + 'static>(
    slot: &'static std::thread::LocalKey<ThreadBuffer<T>>,
    len: usize,
) -> Vec<T> {
    let mut buffer = slot.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    buffer.resize(len, T::default());
    buffer
}

pub(crate) fn give_thread_buffer<T: 'static>(slot: &'static std::thread::LocalKey<ThreadBuffer<T>>, buffer: Vec<T>) {
    slot.with(|slot| *slot.borrow_mut() = buffer);
}

/// What a fused op's forward keeps for its backward. Stored only when a
/// gradient may be asked for; taken, not cloned, by backward, so the
/// activations are freed as soon as that op's backward is done rather than
/// with the whole graph.
pub(crate) struct SavedForward<T> {
    wanted: bool,
    slot: Mutex<Option<T>>,
}

impl<T> SavedForward<T> {
    /// `wanted`: whether the op's input is tracked (`Tensor::track_op`).
    pub(crate) fn new(wanted: bool) -> Self {
        SavedForward { wanted, slot: Mutex::new(None) }
    }

    pub(crate) fn put(&self, value: T) {
        if self.wanted {
            if let Ok(mut slot) = self.slot.lock() {
                *slot = Some(value);
            }
        }
    }

    pub(crate) fn take(&self, op: &str) -> Result<T> {
        match self.slot.lock().ok().and_then(|mut slot| slot.take()) {
            Some(value) => Ok(value),
            None => bail!("{op}: backward without a saved forward pass (backward runs once per forward)"),
        }
    }
}

/// A frozen parameter's data as a Vec (they are small: norms and biases).
pub(crate) fn param_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// The compiled variants of attempt-pkg's own kernels (softmax, attention,
/// GELU, norms): AVX2 + FMA, or the portable baseline. The matrix products go
/// through the gemm crate, which picks its own AVX-512 / AVX2 / scalar path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    Avx2,
    Portable,
}

impl KernelPath {
    pub fn as_str(self) -> &'static str {
        match self {
            KernelPath::Avx2 => "avx2",
            KernelPath::Portable => "portable",
        }
    }
}

/// Environment variable that forces a kernel path (`avx2` or `portable`;
/// unset or `auto`: the best this CPU runs). The test script runs the
/// numerical tests once per path the CPU supports.
pub const KERNEL_PATH_VAR: &str = "ATTEMPT_KERNELS";

/// Whether this CPU has AVX2 and FMA: what the avx2 kernel path and the
/// avx2 gemm backend need.
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX-512 F (where the gemm crate's AVX-512 kernels
/// stay the frozen products' default).
pub(crate) fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The kernel paths this CPU can execute, best first.
pub fn supported_kernel_paths() -> Vec<KernelPath> {
    let mut paths = Vec::new();
    if has_avx2_fma() {
        paths.push(KernelPath::Avx2);
    }
    paths.push(KernelPath::Portable);
    paths
}

/// The path the kernels run: the one `ATTEMPT_KERNELS` names, else the best
/// supported. Read once. A path this CPU cannot run, or an unknown name, is a
/// hard error: a test run must never silently check another path than asked.
pub fn kernel_path() -> KernelPath {
    static PATH: std::sync::OnceLock<KernelPath> = std::sync::OnceLock::new();
    *PATH.get_or_init(|| {
        let supported = supported_kernel_paths();
        let wanted = match std::env::var(KERNEL_PATH_VAR) {
            Ok(v) if v.is_empty() || v == "auto" => None,
            Ok(v) => Some(v),
            Err(_) => None,
        };
        match wanted {
            None => supported[0],
            Some(name) => match supported.iter().find(|p| p.as_str() == name) {
                Some(p) => *p,
                None => panic!(
                    "{KERNEL_PATH_VAR}={name}: this CPU runs {}; unset it or name one of those",
                    supported.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                ),
            },
        }
    })
}

/// Runs `kernel` compiled for AVX2 + FMA when that is the [`kernel_path`].
/// The crate targets baseline x86-64 (SSE2, no FMA), so the elementwise and
/// row loops of the kernels would otherwise vectorise 4 wide without fused
/// multiply-adds; candle's gemm does the same runtime dispatch.
#[inline(always)]
pub(crate) fn vectorized<R>(kernel: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(kernel: impl FnOnce() -> R) -> R {
            kernel()
        }
        if kernel_path() == KernelPath::Avx2 {
            // SAFETY: kernel_path() is Avx2 only when the CPU has avx2 and fma.
            return unsafe { avx2(kernel) };
        }
    }
    kernel()
}

/// e^x without a libm call, so that exp loops vectorise (inside
/// [`vectorized`]). Cephes' expf: n = round(x·log2 e), r = x − n·ln 2 in two
/// parts (Cody–Waite), e^r by a polynomial, times 2^n built in the exponent
/// bits. Relative error ≤ 3e-7. Below -87.3 gives ≈1e-38 (not 0), above
/// 88.7 +inf; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(-87.3, 88.7);
    let shifted = c * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // n as an integer, read from the mantissa bits of `shifted` (ROUND's
    // exponent leaves n in its low bits). `n as i32` would be the same value,
    // but Rust's saturating float-to-int cast does not vectorise on AVX2: it
    // turned every exp loop back into scalar code.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let y = e * f32::from_bits(n_int.wrapping_add(127) << 23);
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// Σ a·b with eight partial sums (a single running float sum is a serial
/// dependency chain that does not vectorise).
#[inline(always)]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ a, as [`dot_f32`].
#[inline(always)]
pub(crate) fn sum_f32(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for i in 0..8 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Softmax over one row, in place: `row` holds the scores on entry and
/// softmax(scale · row) on return. Keys whose `keep` is false (when given)
/// get probability 0; a row with no attended key becomes all zeros (the
/// reference would spread it uniformly over padding, which no caller relies
/// on). Shared by the softmax ops and the fused attention.
#[inline(always)]
pub(crate) fn softmax_in_place(row: &mut [f32], scale: f32, keep: Option<&[bool]>) {
    let mut max = f32::NEG_INFINITY;
    match keep {
        Some(keep) => {
            for (&v, &k) in row.iter().zip(keep) {
                if k && v > max {
                    max = v;
                }
            }
        }
        None => {
            for &v in row.iter() {
                max = max.max(v);
            }
        }
    }
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let shift = max * scale;
    match keep {
        Some(keep) => {
            for (v, &k) in row.iter_mut().zip(keep) {
                let e = exp_f32(*v * scale - shift);
                *v = if k { e } else { 0.0 };
            }
        }
        None => {
            for v in row.iter_mut() {
                *v = exp_f32(*v * scale - shift);
            }
        }
    }
    let inv = 1.0 / sum_f32(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Softmax backward over one row, in place: `grad` holds dL/dy on entry and
/// dL/dx = scale · y ⊙ (grad − Σ grad ⊙ y) on return (masked entries have
/// y = 0 and get 0). Shared by the masked softmax and the fused attention.
#[inline(always)]
pub(crate) fn softmax_backward_in_place(grad: &mut [f32], y: &[f32], scale: f32) {
    let dot = dot_f32(grad, y);
    for (x, &y) in grad.iter_mut().zip(y) {
        *x = scale * y * (*x - dot);
    }
}

/// Rows per rayon task: enough work per task to amortise scheduling.
pub(crate) fn min_rows(row_len: usize) -> usize {
    (16384 / row_len.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::{dot_f32, exp_f32, sum_f32, vectorized};

    #[test]
    fn exp_matches_libm_to_float_precision() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NEG_INFINITY) < 1e-37);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn sums_match_sequential_sums() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((vectorized(|| dot_f32(&a, &b)) - dot).abs() < 1e-5);
        assert!((sum_f32(&a) - a.iter().sum::<f32>()).abs() < 1e-5);
    }
}
