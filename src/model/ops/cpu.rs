//! Helpers shared by the CPU kernels.

use candle_core::{bail, CpuStorage, Layout, Result, Tensor};

/// The contiguous f32 data a layout selects.
pub(crate) fn f32_slice<'a>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: input must be contiguous"),
    }
}

/// A frozen parameter's data as a Vec (they are small: norms and biases).
pub(crate) fn param_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Rows per rayon task: enough work per task to amortise scheduling.
pub(crate) fn min_rows(row_len: usize) -> usize {
    (16384 / row_len.max(1)).max(1)
}
