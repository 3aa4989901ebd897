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
        let threads = candle_core::utils::get_num_threads();
        let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        if m > 0 && n > 0 {
            // SAFETY: y is m×n row-major, x is m×k row-major, w is n×k row-major
            // read as its transpose (k×n with column stride k); all slices have
            // exactly those sizes, checked above via dims2 and x.len().
            unsafe {
                gemm::gemm(
                    m, n, k,
                    y.as_mut_ptr(), 1, n as isize,
                    read_dst,
                    x.as_ptr(), 1, k as isize,
                    w.as_ptr(), k as isize, 1,
                    1.0, 1.0,
                    false, false, false,
                    par,
                );
            }
        }
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
