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

/// e^x without a libm call, so the loops of the softmax and GELU kernels
/// vectorise (a scalar `expf` per element was 8 % of a training step).
/// Cephes' expf: n = round(x·log2 e), r = x − n·ln 2 in two parts (Cody–Waite,
/// so large |x| keep their precision), e^r by a degree-7 polynomial, times
/// 2^n built in the exponent bits. Relative error ≤ 3e-7. Inputs below -87.3
/// give ≈1e-38 (not 0), above 88.7 +inf; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(-87.3, 88.7);
    let n = (c * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let e = p * r * r + r + 1.0;
    let y = e * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// Rows per rayon task: enough work per task to amortise scheduling.
pub(crate) fn min_rows(row_len: usize) -> usize {
    (16384 / row_len.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

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
        assert!(exp_f32(-1e30) < 1e-37);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }
}
