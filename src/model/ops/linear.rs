//! Frozen linear layer: y = x Wᵀ + b, whose backward computes dx only.
//!
//! `Tensor::matmul`'s backward always computes the weight gradient too, even
//! for a plain (frozen) tensor; for a prompt-only training step that is a
//! third of all matmul work thrown away.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

use super::cpu::f32_slice;

/// x [.., in] · w [out, in]ᵀ + b [out].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    if !super::use_fused(x) || !super::use_fused(w) {
        return super::reference::linear(x, w, b);
    }
    let (out, inp) = w.dims2()?;
    let k = x.dim(candle_core::D::Minus1)?;
    if k != inp {
        bail!("linear layer takes {inp} features but the input has {k}");
    }
    if let Some(b) = b {
        if b.elem_count() != out {
            bail!("linear layer with {out} outputs got a bias of shape {:?}", b.shape());
        }
    }
    let op = FrozenLinear { w: w.contiguous()?, b: b.map(|b| b.flatten_all()).transpose()? };
    x.contiguous()?.apply_op1(op)
}

struct FrozenLinear {
    w: Tensor,
    b: Option<Tensor>,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "attempt-frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let (n, k) = self.w.dims2()?;
        let m = x.len() / k.max(1);
        let mut dims = l.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        let (mut y, read_dst) = match &self.b {
            Some(b) => (super::fill::repeat_row(&b.to_vec1::<f32>()?, m), true),
            None => (super::fill::zeros(m * n), false),
        };
        let (ws, wl) = self.w.storage_and_layout();
        let Storage::Cpu(ws) = &*ws else { bail!("{}: weight is not on the CPU", self.name()) };
        let w = f32_slice(self.name(), ws, wl)?;
        linear_into(&mut y, x, w, n, k, read_dst)?;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (n, k) = self.w.dims2()?;
        let g = g.contiguous()?;
        let m = g.elem_count() / n.max(1);
        // On the frozen products' backend, as the forward (candle's matmul
        // would take the gemm crate whatever the backend).
        let dx = super::cpu::with_cpu_slices(self.name(), &[&g, &self.w], |gw| {
            let mut dx = super::fill::zeros(m * k);
            linear_backward_into(&mut dx, gw[0], gw[1], n, k, false)?;
            Ok(dx)
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// The thread count for the big gemms (candle's setting).
fn parallelism() -> gemm::Parallelism {
    let threads = candle_core::utils::get_num_threads();
    if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// A row-major matrix inside a slice: row `r` starts at `r · row_stride`.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
}

/// Whether `m` rows of `width` with `row_stride` fit in `len` elements.
pub(super) fn rows_fit(len: usize, m: usize, row_stride: usize, width: usize) -> bool {
    m == 0 || (row_stride >= width && len >= (m - 1) * row_stride + width)
}

/// dst[m, cols] (+)= lhs[m, inner] · w, where `w` holds an [n, k] row-major
/// weight read either as its transpose (`transposed`: inner = k, cols = n) or
/// as it is (inner = n, cols = k). `dst` and `lhs` may be column blocks of
/// wider matrices. The one place the frozen-linear kernels call a matrix
/// product: the gemm crate or the system BLAS that [`super::blas::gemm_backend`] picks.
fn gemm_rows(
    dst: &mut [f32],
    dst_stride: usize,
    lhs: Rows,
    w: &[f32],
    shape: (usize, usize, usize),
    transposed: bool,
    accumulate: bool,
) -> Result<()> {
    gemm_rows_on(super::blas::gemm_backend(), dst, dst_stride, lhs, w, shape, transposed, accumulate)
}

/// [`gemm_rows`] on a given backend.
#[allow(clippy::too_many_arguments)]
fn gemm_rows_on(
    backend: super::blas::GemmBackend,
    dst: &mut [f32],
    dst_stride: usize,
    lhs: Rows,
    w: &[f32],
    (m, n, k): (usize, usize, usize),
    transposed: bool,
    accumulate: bool,
) -> Result<()> {
    let (inner, cols, w_rs, w_cs) = if transposed { (k, n, 1, k) } else { (n, k, k, 1) };
    if !rows_fit(dst.len(), m, dst_stride, cols)
        || !rows_fit(lhs.data.len(), m, lhs.row_stride, inner)
        || w.len() != n * k
    {
        bail!("linear: [{m}, {inner}] · [{inner}, {cols}] does not fit the given buffers");
    }
    if m == 0 || cols == 0 {
        return Ok(());
    }
    if matches!(backend, super::blas::GemmBackend::Avx2 | super::blas::GemmBackend::Bf16) {
        let (kernel, available, needs): (unsafe fn(super::sgemm_avx2::Product), bool, &str) =
            if backend == super::blas::GemmBackend::Avx2 {
                (super::sgemm_avx2::sgemm, super::sgemm_avx2::available(), "AVX2 and FMA")
            } else {
                (super::sgemm_bf16::sgemm, super::sgemm_bf16::available(), "AVX512-BF16")
            };
        if !available {
            bail!("linear: the {} backend needs a CPU with {needs}", backend.as_str());
        }
        // w read as [inner, cols]: element (p, j) at p·w_rs + j·w_cs.
        // SAFETY: the extents are checked above; the kernel's CPU features too.
        unsafe {
            kernel(super::sgemm_avx2::Product {
                m,
                n: cols,
                k: inner,
                a: lhs.data.as_ptr(),
                a_rs: lhs.row_stride,
                a_cs: 1,
                b: w.as_ptr(),
                b_rs: w_rs,
                b_cs: w_cs,
                dst: dst.as_mut_ptr(),
                ldc: dst_stride,
                accumulate,
                parallel: candle_core::utils::get_num_threads() > 1,
            })
        };
        return Ok(());
    }
    if backend != super::blas::GemmBackend::Gemm {
        let blas = super::blas::system_blas(backend).map_err(candle_core::Error::msg)?;
        return blas
            .sgemm((m, cols, inner), lhs.data, lhs.row_stride, w, k, transposed, dst, dst_stride, accumulate)
            .map_err(candle_core::Error::msg);
    }
    // SAFETY: the extents of dst and lhs (m rows of the given strides)
    // and of w (n×k elements, read with the strides above) are checked.
    unsafe {
        gemm::gemm(
            m,
            cols,
            inner,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            1,
            lhs.row_stride as isize,
            w.as_ptr(),
            w_cs as isize,
            w_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(),
        );
    }
    Ok(())
}

/// y[m, n] = x[m, k] · w[n, k]ᵀ (or y += … when `accumulate`) where y and x
/// may be column blocks of wider matrices (row strides ≥ their widths) —
/// e.g. q, k and v written into one packed q|k|v buffer.
pub(super) fn linear_strided(
    y: &mut [f32],
    y_stride: usize,
    x: Rows,
    w: &[f32],
    shape: (usize, usize, usize),
    accumulate: bool,
) -> Result<()> {
    gemm_rows(y, y_stride, x, w, shape, true, accumulate)
}

/// dx[m, k] (+)= g[m, n] · w[n, k], `g` possibly a column block of a wider
/// matrix: the input gradient of [`linear_strided`].
pub(super) fn linear_backward_strided(
    dx: &mut [f32],
    g: Rows,
    w: &[f32],
    shape: (usize, usize, usize),
    accumulate: bool,
) -> Result<()> {
    let (m, _, k) = shape;
    if dx.len() != m * k {
        bail!("linear backward: {} outputs for [{m}, {k}]", dx.len());
    }
    gemm_rows(dx, k, g, w, shape, false, accumulate)
}

/// y [m, n] = x [m, k] · w [n, k]ᵀ, or y += … when `accumulate` (the way to
/// add a bias or a residual: fill y with it first). Row-major slices.
pub(super) fn linear_into(y: &mut [f32], x: &[f32], w: &[f32], n: usize, k: usize, accumulate: bool) -> Result<()> {
    linear_on(super::blas::gemm_backend(), y, x, w, (n, k), accumulate)
}

/// dx [m, k] = g [m, n] · w [n, k] (the input gradient of [`linear_into`]),
/// or dx += … when `accumulate`.
pub(super) fn linear_backward_into(
    dx: &mut [f32],
    g: &[f32],
    w: &[f32],
    n: usize,
    k: usize,
    accumulate: bool,
) -> Result<()> {
    linear_backward_on(super::blas::gemm_backend(), dx, g, w, (n, k), accumulate)
}

/// [`linear_into`] on a named backend rather than the process-wide one:
/// `cargo bench --bench gemm` measures the backends side by side in one run.
pub fn linear_on(
    backend: super::blas::GemmBackend,
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    (n, k): (usize, usize),
    accumulate: bool,
) -> Result<()> {
    let m = x.len() / k.max(1);
    if x.len() != m * k || y.len() != m * n {
        bail!("linear: {} inputs and {} outputs do not fit [{m}, {k}] · [{n}, {k}]ᵀ", x.len(), y.len());
    }
    gemm_rows_on(backend, y, n, Rows { data: x, row_stride: k }, w, (m, n, k), true, accumulate)
}

/// [`linear_backward_into`] on a named backend, as [`linear_on`].
pub fn linear_backward_on(
    backend: super::blas::GemmBackend,
    dx: &mut [f32],
    g: &[f32],
    w: &[f32],
    (n, k): (usize, usize),
    accumulate: bool,
) -> Result<()> {
    let m = g.len() / n.max(1);
    if g.len() != m * n {
        bail!("linear backward: {} gradients do not fit rows of {n}", g.len());
    }
    if dx.len() != m * k {
        bail!("linear backward: {} outputs for [{m}, {k}]", dx.len());
    }
    gemm_rows_on(backend, dx, k, Rows { data: g, row_stride: n }, w, (m, n, k), false, accumulate)
}
