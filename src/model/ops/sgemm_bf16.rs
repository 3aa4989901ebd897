//! A matrix product with bf16 operands and fp32 accumulation, for CPUs with
//! AVX512-BF16 (AMD Zen 4 and 5, Intel Cooper Lake and Sapphire Rapids on):
//! the `bf16` gemm backend, opt-in (`ATTEMPT_GEMM=bf16`), never the default.
//!
//! Why hand-written: the one instruction that makes bf16 pay,
//! `vdpbf16ps` (32 products a 512-bit register), is used by no crate we have:
//! candle's bf16 CPU matmul ran 1.05–1.34× *slower* than its fp32 on a Zen 4
//! (`cargo bench --bench gemm`, README), while PyTorch's bf16 products ran at
//! 2.1–2.5× its fp32 there. Each operand is rounded to bf16 (8 bits of
//! mantissa, round to nearest even) as it is packed; the sums stay fp32. The
//! results are not those of an fp32 product — relative errors near 1e-3 on
//! each product instead of 1e-7 — which is why it is never chosen by itself,
//! and why every run records the backend it computed with.
//!
//! Layout: both operands packed as pairs of consecutive depths in one 32-bit
//! word (what `vdpbf16ps` multiplies lane by lane): A in micro-panels of 12
//! rows `[pair][12]`, B in panels of 32 columns `[pair][32]`. A 12 × 32 tile
//! of the result is 24 zmm accumulators; each pair of depths is two loads of
//! B, twelve broadcasts of A and 24 `vdpbf16ps`. On one Zen 4 core, with
//! both panels in L1, that tile ran at 232 GFLOP/s (so did 6, 8, 10 and 14
//! rows × 32), where a 16 × 16 tile, one broadcast per `vdpbf16ps`, ran at
//! 157–171.

use rayon::prelude::*;

use super::cpu::{give_thread_buffer, take_thread_buffer, SendPtr, ThreadBuffer};
use super::sgemm_avx2::Product;

/// Rows and columns of the micro-kernel's tile of the result.
const MR: usize = 12;
const NR: usize = 32;
/// Depth pairs of one block: a B panel (24 KB) and an A micro-panel (9 KB)
/// stay in L1 while the kernel runs; k = 384 is one block, 1,536 four.
const KCP: usize = 192;
/// Rows per task: eight micro-panels (96 × 384 depths, 72 KB) stay in L2
/// while the task's B panels pass over them.
const MC: usize = 96;

/// Whether this CPU can run the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to bf16 (nearest, ties to even; NaN stays NaN), as the 16
/// bits the instruction reads. Hand-written: one line of bit arithmetic, the
/// same rounding `vcvtne2ps2bf16` does.
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// `x` rounded to bf16 and back: what the kernel multiplies.
pub fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits(u32::from(bf16_bits(x)) << 16)
}

/// Computes `product` (same contract as the AVX2 kernel's) with operands
/// rounded to bf16.
///
/// # Safety
/// [`available`] must be true, and the three pointers must be valid for
/// every element the strides reach (dst for writing, not aliased).
pub unsafe fn sgemm(product: Product) {
    // SAFETY: forwarded from the caller.
    if unsafe { product.finish_if_empty() } {
        return;
    }
    let Product { m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, dst, ldc, accumulate, parallel } = product;
    let pairs = k.div_ceil(2);
    let (micro_panels, panels) = (m.div_ceil(MR), n.div_ceil(NR));
    let mut packed_a = take_thread_buffer(&PACKED_A, micro_panels * pairs * MR);
    let mut packed_b = take_thread_buffer(&PACKED_B, panels * pairs * NR);
    let (a_addr, b_addr) = (a as usize, b as usize);
    let pack_a_panel = |(mp, panel): (usize, &mut [u32])| {
        // SAFETY: the panel's rows and every depth are inside a.
        unsafe { pack_a(a_addr as *const f32, (a_rs, a_cs), m, k, mp, panel) }
    };
    let pack_b_panel = |(j, panel): (usize, &mut [u32])| {
        // SAFETY: the panel's columns and every depth are inside b.
        unsafe { pack_b(b_addr as *const f32, (b_rs, b_cs), n, k, j, panel) }
    };
    if parallel {
        packed_a.par_chunks_mut(pairs * MR).enumerate().for_each(pack_a_panel);
        packed_b.par_chunks_mut(pairs * NR).enumerate().for_each(pack_b_panel);
    } else {
        packed_a.chunks_mut(pairs * MR).enumerate().for_each(pack_a_panel);
        packed_b.chunks_mut(pairs * NR).enumerate().for_each(pack_b_panel);
    }
    // Tasks: row blocks × runs of column panels, a few per thread (few-row
    // products, a decoder's 64 rows, split by columns instead).
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let row_blocks = m.div_ceil(MC);
    let runs = (4 * threads).div_ceil(row_blocks).clamp(1, panels);
    let per_run = panels.div_ceil(runs);
    let runs = panels.div_ceil(per_run);
    let (out, a_packed, b_packed) = (SendPtr(dst), &packed_a, &packed_b);
    let task = |t: usize| {
        let (block, run) = (t / runs, t % runs);
        let first_mp = block * (MC / MR);
        let last_mp = (first_mp + MC / MR).min(micro_panels);
        let (first_j, last_j) = (run * per_run, ((run + 1) * per_run).min(panels));
        for q0 in (0..pairs).step_by(KCP) {
            let depth = KCP.min(pairs - q0);
            let overwrite = q0 == 0 && !accumulate;
            for j in first_j..last_j {
                let bp = &b_packed[(j * pairs + q0) * NR..][..depth * NR];
                let cols = NR.min(n - j * NR);
                for mp in first_mp..last_mp {
                    let ap = &a_packed[(mp * pairs + q0) * MR..][..depth * MR];
                    let (i, rows) = (mp * MR, MR.min(m - mp * MR));
                    // SAFETY: the tile's rows i..i+rows and columns
                    // 32j..32j+cols are inside dst, and only this task
                    // writes them; the CPU features are the caller's.
                    unsafe { micro_kernel(depth, ap, bp, out.get().add(i * ldc + j * NR), ldc, rows, cols, overwrite) };
                }
            }
        }
    };
    if parallel {
        (0..row_blocks * runs).into_par_iter().for_each(task);
    } else {
        (0..row_blocks * runs).for_each(task);
    }
    give_thread_buffer(&PACKED_A, packed_a);
    give_thread_buffer(&PACKED_B, packed_b);
}

thread_local! {
    /// This thread's packed operands (the packing writes every word).
    static PACKED_A: ThreadBuffer<u32> = const { std::cell::RefCell::new(Vec::new()) };
    static PACKED_B: ThreadBuffer<u32> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The mask of the first n (at most 16) lanes.
#[cfg(target_arch = "x86_64")]
fn lanes(n: usize) -> u16 {
    if n >= 16 {
        0xffff
    } else {
        (1u16 << n) - 1
    }
}

/// Two bf16 values in one word, the lower depth in the low half.
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16_bits(lo)) | (u32::from(bf16_bits(hi)) << 16)
}

/// Micro-panel `mp` of a (rows 12mp..12mp+12, every depth) as
/// `[pair][12]`: word (q, r) holds depths 2q and 2q+1 of row 12mp+r; zero
/// past the last row and past depth k.
///
/// # Safety
/// Rows 12mp..min(12mp+12, m) and depths 0..k are inside a (strides a_rs,
/// a_cs); dst holds k.div_ceil(2) · 12 words.
unsafe fn pack_a(a: *const f32, (a_rs, a_cs): (usize, usize), m: usize, k: usize, mp: usize, dst: &mut [u32]) {
    // SAFETY: the caller's contract; a row is a line of depths.
    unsafe { pack_lines(a.wrapping_add(mp * MR * a_rs), (a_rs, a_cs), MR.min(m - mp * MR), k, dst, MR) }
}

/// Panel `j` of b (columns 32j..32j+32, every depth) as `[pair][32]`: word
/// (q, c) holds depths 2q and 2q+1 of column 32j+c; zero past column n and
/// past depth k.
///
/// # Safety
/// Columns 32j..min(32j+32, n) and depths 0..k are inside b (strides b_rs,
/// b_cs); dst holds k.div_ceil(2) · 32 words.
unsafe fn pack_b(b: *const f32, (b_rs, b_cs): (usize, usize), n: usize, k: usize, j: usize, dst: &mut [u32]) {
    let cols = NR.min(n - j * NR);
    #[cfg(target_arch = "x86_64")]
    if b_cs == 1 && available() {
        // Row-major b (the input gradient's weight): two rows of 32
        // columns interleaved per pair.
        // SAFETY: as the caller's; the CPU features are checked.
        unsafe { pack_rows_interleaved(b.add(j * NR), b_rs, k, cols, dst) };
        return;
    }
    // SAFETY: the caller's contract; a column is a line of depths.
    unsafe { pack_lines(b.wrapping_add(j * NR * b_cs), (b_cs, b_rs), cols, k, dst, NR) }
}

/// `live` lines of k values (line i at `first + i · line_stride`, value p
/// `p · stride` further on) as pairs: word (q, i) — values 2q and 2q+1 of
/// line i — at `dst[q · width + i]`, zero for lines past `live` and values
/// past k. Contiguous lines go 16 at a time through [`pack_16_lines`]; other
/// strides (a transposed A) one value at a time.
///
/// # Safety
/// Lines 0..live readable for k values at those strides; dst holds
/// k.div_ceil(2) · width words.
unsafe fn pack_lines(
    first: *const f32,
    (line_stride, stride): (usize, usize),
    live: usize,
    k: usize,
    dst: &mut [u32],
    width: usize,
) {
    for group in (0..width).step_by(16) {
        let lines = live.saturating_sub(group).min(16);
        let group_first = first.wrapping_add(group * line_stride);
        #[cfg(target_arch = "x86_64")]
        if stride == 1 && available() {
            // SAFETY: the caller's contract; the CPU features are checked.
            unsafe { pack_16_lines(group_first, line_stride, lines, k, (&mut *dst, width, group)) };
            continue;
        }
        for (q, words) in dst.chunks_exact_mut(width).enumerate() {
            for (i, word) in words[group..width.min(group + 16)].iter_mut().enumerate() {
                *word = if i < lines {
                    // SAFETY: line group + i < live; values 2q and (when
                    // < k) 2q + 1 are on it.
                    let at = |p: usize| unsafe { *group_first.add(i * line_stride + p * stride) };
                    pair(at(2 * q), if 2 * q + 1 < k { at(2 * q + 1) } else { 0.0 })
                } else {
                    0
                };
            }
        }
    }
}

/// Up to sixteen contiguous lines of k values (`live` of them real, line i
/// at `first + i · stride`; the rest zero) as pairs: word (q, i) — values 2q
/// and 2q+1 of line i — goes to `dst[q · width + offset + i]`, for i below
/// min(16, width − offset). Each block of 32 values a line is converted in
/// one instruction, and the 16 × 16 block of words transposed in registers
/// (scattering the words one by one took 2.5 % of the gemm bench's time).
///
/// # Safety
/// AVX512-F/BW/BF16; lines 0..live readable for k values; dst holds
/// k.div_ceil(2) · width words; offset < width.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_16_lines(
    first: *const f32,
    stride: usize,
    live: usize,
    k: usize,
    (dst, width, offset): (&mut [u32], usize, usize),
) {
    use std::arch::x86_64::*;
    let pairs = k.div_ceil(2);
    let store_mask = lanes(width - offset);
    for q0 in (0..pairs).step_by(16) {
        let left = k - 2 * q0;
        let (lo_mask, hi_mask) = (lanes(left), lanes(left.saturating_sub(16)));
        let mut words = [_mm512_setzero_si512(); 16];
        for (i, w) in words.iter_mut().enumerate().take(live) {
            // Masked-off lanes are not read; wrapping_add: the address of
            // the second half may lie past the line when it is all masked.
            let line = first.wrapping_add(i * stride + 2 * q0);
            // SAFETY: the unmasked lanes are values 2q0.. < k of line i.
            unsafe {
                let lo = _mm512_maskz_loadu_ps(lo_mask, line);
                let hi = _mm512_maskz_loadu_ps(hi_mask, line.wrapping_add(16));
                // Lanes 0..16 from the second argument: word t is the pair
                // (2q0 + 2t, 2q0 + 2t + 1).
                *w = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            }
        }
        let columns = transpose_16x16(words);
        for (t, column) in columns.iter().enumerate().take(pairs - q0) {
            // SAFETY: pair q0 + t < pairs: its words offset.. (masked to the
            // width) are inside dst.
            unsafe {
                _mm512_mask_storeu_epi32(dst.as_mut_ptr().add((q0 + t) * width + offset).cast(), store_mask, *column)
            };
        }
    }
}

/// The transpose of a 16 × 16 matrix of 32-bit words held as 16 rows:
/// pairs of rows interleaved, then pairs of pairs, then 128-bit lanes
/// exchanged in two rounds (64 shuffles).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose_16x16(r: [std::arch::x86_64::__m512i; 16]) -> [std::arch::x86_64::__m512i; 16] {
    use std::arch::x86_64::*;
    // t[2a], t[2a+1]: rows 2a and 2a+1 interleaved (lane L: columns 4L, 4L+1 / 4L+2, 4L+3).
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (x, y) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(x, y)
        } else {
            _mm512_unpackhi_epi32(x, y)
        }
    });
    // u[4b + c], lane L: column 4L + c of rows 4b..4b+4.
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let (b, c) = (i / 4, i % 4);
        let (x, y) = (t[4 * b + c / 2], t[4 * b + 2 + c / 2]);
        if c % 2 == 0 {
            _mm512_unpacklo_epi64(x, y)
        } else {
            _mm512_unpackhi_epi64(x, y)
        }
    });
    // Column 4L + c takes lane L of u[c], u[4 + c], u[8 + c], u[12 + c]:
    // a 4 × 4 transpose of 128-bit lanes.
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_i32x4::<0xdd>(u[c], u[4 + c]);
        let v2 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
        let v3 = _mm512_shuffle_i32x4::<0xdd>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        out[8 + c] = _mm512_shuffle_i32x4::<0xdd>(v0, v2);
        out[4 + c] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(v1, v3);
    }
    out
}

/// Rows of a row-major matrix (32 columns from `b`, `cols` of them real)
/// interleaved by pairs of rows: word (q, c) = rows 2q, 2q+1 of column c.
///
/// # Safety
/// AVX512-F/BW/BF16; rows 0..k of `cols` columns at stride `b_rs` readable;
/// dst holds k.div_ceil(2) · 32 words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_rows_interleaved(b: *const f32, b_rs: usize, k: usize, cols: usize, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    let masks = [lanes(cols), lanes(cols.saturating_sub(16))];
    // Word c of the result takes bf16 c (row 2q) and bf16 16 + c (row 2q+1).
    let order: [i16; 32] = std::array::from_fn(|t| ((t % 2) * 16 + t / 2) as i16);
    // SAFETY: the features are the caller's; masked-off lanes are not read
    // (wrapping_add: such an address may lie past the matrix).
    unsafe {
        let order = _mm512_loadu_si512(order.as_ptr().cast());
        for (q, words) in dst.chunks_exact_mut(NR).enumerate().take(k.div_ceil(2)) {
            for (half, mask) in masks.into_iter().enumerate() {
                let even = _mm512_maskz_loadu_ps(mask, b.wrapping_add(2 * q * b_rs + 16 * half));
                let odd = if 2 * q + 1 < k {
                    _mm512_maskz_loadu_ps(mask, b.wrapping_add((2 * q + 1) * b_rs + 16 * half))
                } else {
                    _mm512_setzero_ps()
                };
                let packed = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(odd, even));
                _mm512_storeu_si512(words.as_mut_ptr().add(16 * half).cast(), _mm512_permutexvar_epi16(order, packed));
            }
        }
    }
}

/// c[rows, cols] (=, or += unless `overwrite`) the 12 × 32 product of the
/// micro-panel `a` and the panel `b` (`depth` pairs each).
///
/// # Safety
/// AVX512-F/BW/BF16; c valid for rows × cols elements at row stride ldc.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(
    depth: usize,
    a: &[u32],
    b: &[u32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    overwrite: bool,
) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= depth * MR && b.len() >= depth * NR);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    for q in 0..depth {
        // SAFETY: q < depth; a holds depth · 12 words, b depth · 32.
        unsafe {
            let b0 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(q * NR).cast()));
            let b1 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(q * NR + 16).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*ap.add(q * MR + r) as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
            }
        }
    }
    let masks = [lanes(cols), lanes(cols.saturating_sub(16))];
    for (r, acc) in acc.iter().enumerate().take(rows) {
        for (half, mask) in masks.into_iter().enumerate().filter(|(_, mask)| *mask != 0) {
            // SAFETY: row r < rows, columns 16·half + lane < cols: inside c.
            unsafe {
                let at = c.add(r * ldc + 16 * half);
                let v = if overwrite { acc[half] } else { _mm512_add_ps(acc[half], _mm512_maskz_loadu_ps(mask, at)) };
                _mm512_mask_storeu_ps(at, mask, v);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(_: usize, _: &[u32], _: &[u32], _: *mut f32, _: usize, _: usize, _: usize, _: bool) {
    unreachable!("sgemm_bf16::available() is false off x86-64")
}

#[cfg(test)]
mod tests {
    use super::super::product_cases::Case;
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(round_to_bf16(1.0 + 1.0 / 256.0), 1.0);
        // 1 + 3·2^-8 is halfway too, between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up.
        assert_eq!(round_to_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round_to_bf16(1.0 + 1.0 / 256.0 + 1e-6), 1.0 + 2.0 / 256.0);
        assert_eq!(round_to_bf16(-2.5), -2.5);
        assert!(round_to_bf16(f32::NAN).is_nan());
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_to_bf16(f32::MAX), f32::INFINITY, "rounds past the largest bf16");
    }

    /// Every edge of the blocking (rows not a multiple of 12 or 96,
    /// columns not of 32 or 16, odd depths, depth over one block, depth 0),
    /// both layouts of a and b, both write modes, wider row strides, serial
    /// and parallel: against a triple loop in f64 over the bf16-rounded
    /// operands (so only fp32 summation separates them), and within bf16's
    /// error of the exact product.
    #[test]
    fn matches_a_triple_loop_over_rounded_operands() {
        if !available() {
            eprintln!("no AVX512-BF16 here: nothing to check");
            return;
        }
        let shapes = [(1, 1, 1), (7, 17, 3), (97, 33, 385), (200, 48, 512), (13, 5, 0), (16, 16, 64), (64, 200, 600)];
        for mut case in Case::all(&shapes) {
            unsafe { sgemm(case.product()) };
            case.check(|i, j, got, before| {
                let (mut rounded, mut exact, mut scale) = (0f64, 0f64, 0f64);
                for p in 0..case.k {
                    let (x, y) = (case.a_at(i, p), case.b_at(p, j));
                    rounded += round_to_bf16(x) as f64 * round_to_bf16(y) as f64;
                    exact += x as f64 * y as f64;
                    scale += (x as f64 * y as f64).abs();
                }
                if case.accumulate {
                    rounded += before as f64;
                    exact += before as f64;
                }
                assert!(
                    (got as f64 - rounded).abs() <= 1e-5 * (1.0 + scale),
                    "{} c[{i},{j}] = {got}, want {rounded} over the rounded operands",
                    case.label
                );
                // bf16 keeps 8 significant bits: each operand is off by at most 2^-8 of itself.
                assert!(
                    (got as f64 - exact).abs() <= 2.0 * 2f64.powi(-8) * scale + 1e-5,
                    "{} c[{i},{j}] = {got}, exact {exact}",
                    case.label
                );
            });
        }
    }
}
