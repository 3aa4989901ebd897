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
        let mut y = vec![0f32; m * n];
        let read_dst = match &self.b {
            Some(b) => {
                let bias = b.to_vec1::<f32>()?;
                for row in y.chunks_mut(n) {
                    row.copy_from_slice(&bias);
                }
                true
            }
            None => false,
        };
        let (ws, wl) = self.w.storage_and_layout();
        let Storage::Cpu(ws) = &*ws else { bail!("{}: weight is not on the CPU", self.name()) };
        let w = f32_slice(self.name(), ws, wl)?;
        linear_into(&mut y, x, w, n, k, read_dst)?;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (n, k) = self.w.dims2()?;
        let m = g.elem_count() / n.max(1);
        let dx = g.contiguous()?.reshape((m, n))?.matmul(&self.w)?;
        debug_assert_eq!(dx.dims(), &[m, k]);
        Ok(Some(dx.reshape(x.shape())?))
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

/// y [m, n] = x [m, k] · w [n, k]ᵀ, or y += … when `accumulate` (the way to
/// add a bias or a residual: fill y with it first). Row-major slices.
pub(super) fn linear_into(y: &mut [f32], x: &[f32], w: &[f32], n: usize, k: usize, accumulate: bool) -> Result<()> {
    let m = x.len() / k.max(1);
    if x.len() != m * k || y.len() != m * n || w.len() != n * k {
        bail!("linear: {} inputs, {} outputs and a {} weight do not fit [{m}, {k}] · [{n}, {k}]ᵀ", x.len(), y.len(), w.len());
    }
    if m > 0 && n > 0 {
        // SAFETY: y is m×n row-major, x is m×k row-major, w is n×k row-major
        // read as its transpose (k×n with column stride k); sizes checked above.
        unsafe {
            gemm::gemm(
                m, n, k,
                y.as_mut_ptr(), 1, n as isize,
                accumulate,
                x.as_ptr(), 1, k as isize,
                w.as_ptr(), k as isize, 1,
                1.0, 1.0,
                false, false, false,
                parallelism(),
            );
        }
    }
    Ok(())
}

/// dx [m, k] = g [m, n] · w [n, k] (the input gradient of [`linear_into`]),
/// or dx += … when `accumulate`.
pub(super) fn linear_backward_into(dx: &mut [f32], g: &[f32], w: &[f32], n: usize, k: usize, accumulate: bool) -> Result<()> {
    let m = g.len() / n.max(1);
    if g.len() != m * n || dx.len() != m * k || w.len() != n * k {
        bail!("linear backward: {} gradients, {} outputs and a {} weight do not fit [{m}, {n}] · [{n}, {k}]", g.len(), dx.len(), w.len());
    }
    if m > 0 && k > 0 {
        // SAFETY: all three are row-major with the sizes checked above.
        unsafe {
            gemm::gemm(
                m, k, n,
                dx.as_mut_ptr(), 1, k as isize,
                accumulate,
                g.as_ptr(), 1, n as isize,
                w.as_ptr(), 1, k as isize,
                1.0, 1.0,
                false, false, false,
                parallelism(),
            );
        }
    }
    Ok(())
}
