//! An fp32 matrix product for AVX2 + FMA CPUs: a 6 × 16 register-tiled
//! micro-kernel over packed panels (the BLIS / GotoBLAS blocking).
//!
//! Why hand-written: on an AVX2-only CPU (AMD EPYC Milan, 2 cores) the gemm
//! crate ran the training step's frozen products (2624 rows × 384 / 1536) at
//! 95–107 GFLOP/s against 122–146 for PyTorch's MKL and 118–143 for BLIS
//! (`cargo bench --bench gemm`, README), and those products are ~80 % of a
//! step there. A system BLAS is not always installed; this is always there.
//! On CPUs with AVX-512 the gemm crate's AVX-512 kernels stay the default.

use rayon::prelude::*;

use super::cpu::SendPtr;

/// Rows and columns of the micro-kernel's tile of the result.
const MR: usize = 6;
const NR: usize = 16;
/// Depth of one packed block: an A micro-panel (6 × 256) and a B panel
/// (256 × 16, 16 KB) stay in L1 while the kernel runs.
const KC: usize = 256;
/// Rows per task: a packed A block of 96 × 256 (96 KB) stays in L2 while
/// every B panel passes over it.
const MC: usize = 96;

/// Whether this CPU can run the kernel.
pub fn available() -> bool {
    super::cpu::has_avx2_fma()
}

/// dst[m, n] (+= when `accumulate`) a[m, k] · b[k, n], where element (i, p)
/// of a is `a[i * lda + p]`, element (p, j) of b is `b[p * b_rs + j * b_cs]`,
/// and element (i, j) of dst is `dst[i * ldc + j]`.
///
/// # Safety
/// [`available`] must be true, and the three pointers must be valid for
/// every element the strides above reach (dst for writing, not aliased).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    (m, n, k): (usize, usize, usize),
    a: *const f32,
    lda: usize,
    b: *const f32,
    b_rs: usize,
    b_cs: usize,
    dst: *mut f32,
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of dst has n writable elements.
                unsafe { std::ptr::write_bytes(dst.add(i * ldc), 0, n) };
            }
        }
        return;
    }
    // B packed once per call into panels of 16 columns, each k × 16 and
    // zero-padded past column n: panel j holds columns 16j..16j+16.
    let panels = n.div_ceil(NR);
    // Reused from call to call (a step makes ~50 of these products): a fresh
    // multi-megabyte buffer would be page-faulted and zeroed every time.
    let mut packed_b = PACKED_B.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    packed_b.clear();
    packed_b.resize(panels * k * NR, 0.0);
    let b_addr = b as usize;
    let pack_panel = |(j, panel): (usize, &mut [f32])| {
        let b = b_addr as *const f32;
        let cols = NR.min(n - j * NR);
        for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
            for (c, v) in row[..cols].iter_mut().enumerate() {
                // SAFETY: p < k and column j·16 + c < n are inside b.
                *v = unsafe { *b.add(p * b_rs + (j * NR + c) * b_cs) };
            }
        }
    };
    if parallel {
        packed_b.par_chunks_mut(k * NR).enumerate().for_each(pack_panel);
    } else {
        packed_b.chunks_mut(k * NR).enumerate().for_each(pack_panel);
    }
    let (a_addr, out) = (a as usize, SendPtr(dst));
    // Depth blocks of equal size (k = 384 is two of 192, not 256 + 128).
    let kc_step = k.div_ceil(k.div_ceil(KC));
    let row_block = |packed_a: &mut Vec<f32>, start: usize| {
        let rows = MC.min(m - start);
        let micro_panels = rows.div_ceil(MR);
        packed_a.resize(micro_panels * MR * kc_step, 0.0);
        let a = a_addr as *const f32;
        for pc in (0..k).step_by(kc_step) {
            let kc = kc_step.min(k - pc);
            // A block packed as micro-panels of 6 rows: [panel][p][6],
            // zero rows past m.
            for mp in 0..micro_panels {
                let panel = &mut packed_a[mp * MR * kc_step..][..kc * MR];
                for r in 0..MR {
                    let i = start + mp * MR + r;
                    if i < m {
                        for p in 0..kc {
                            // SAFETY: row i < m, column pc + p < k.
                            panel[p * MR + r] = unsafe { *a.add(i * lda + pc + p) };
                        }
                    } else {
                        for p in 0..kc {
                            panel[p * MR + r] = 0.0;
                        }
                    }
                }
            }
            let overwrite = pc == 0 && !accumulate;
            for j in 0..panels {
                let bp = &packed_b[j * k * NR + pc * NR..][..kc * NR];
                let cols = NR.min(n - j * NR);
                for mp in 0..micro_panels {
                    let i = start + mp * MR;
                    let ap = &packed_a[mp * MR * kc_step..][..kc * MR];
                    // SAFETY: the tile's rows i..i+min(6, m−i) and columns
                    // 16j..16j+cols are inside dst, and only this task
                    // writes rows start..start+rows.
                    unsafe {
                        micro_kernel(kc, ap, bp, out.get().add(i * ldc + j * NR), ldc, MR.min(m - i), cols, overwrite)
                    };
                }
            }
        }
    };
    let starts: Vec<usize> = (0..m).step_by(MC).collect();
    if parallel {
        starts.into_par_iter().for_each_init(Vec::new, row_block);
    } else {
        let mut packed_a = Vec::new();
        for start in starts {
            row_block(&mut packed_a, start);
        }
    }
    PACKED_B.with(|slot| *slot.borrow_mut() = packed_b);
}

thread_local! {
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// c[rows, cols] (=, or += unless `overwrite`) the 6 × 16 product of the
/// packed micro-panel `a` ([kc][6]) and panel `b` ([kc][16]).
///
/// # Safety
/// AVX2 and FMA; c valid for rows × cols elements at row stride ldc.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    overwrite: bool,
) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    // The tile of c is read (or written) after the loop: ask for its lines
    // now so they arrive while the products run.
    if !overwrite {
        for r in 0..rows {
            // SAFETY: a prefetch of a row inside c (rows ≤ the tile's).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + cols - 1) as *const i8);
            }
        }
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let step = |acc: &mut [[__m256; 2]; MR], p: usize| {
        // SAFETY: p < kc; the slices hold kc × 6 and kc × 16 elements.
        unsafe {
            let b0 = _mm256_loadu_ps(bp.add(p * NR));
            let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(p * MR + r));
                acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
            }
        }
    };
    // Four steps a turn: less loop overhead for the front end.
    let mut p = 0;
    while p + 4 <= kc {
        step(&mut acc, p);
        step(&mut acc, p + 1);
        step(&mut acc, p + 2);
        step(&mut acc, p + 3);
        p += 4;
    }
    while p < kc {
        step(&mut acc, p);
        p += 1;
    }
    if rows == MR && cols == NR {
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: a full tile lies inside c (the caller's contract).
            unsafe {
                let row = c.add(r * ldc);
                let (mut lo, mut hi) = (acc[0], acc[1]);
                if !overwrite {
                    lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
                    hi = _mm256_add_ps(hi, _mm256_loadu_ps(row.add(8)));
                }
                _mm256_storeu_ps(row, lo);
                _mm256_storeu_ps(row.add(8), hi);
            }
        }
    } else {
        let mut tile = [0f32; MR * NR];
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: tile has 16 elements per row.
            unsafe {
                _mm256_storeu_ps(tile.as_mut_ptr().add(r * NR), acc[0]);
                _mm256_storeu_ps(tile.as_mut_ptr().add(r * NR + 8), acc[1]);
            }
        }
        for r in 0..rows {
            for j in 0..cols {
                // SAFETY: r < rows, j < cols: inside c.
                unsafe {
                    let v = c.add(r * ldc + j);
                    *v = if overwrite { tile[r * NR + j] } else { *v + tile[r * NR + j] };
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(_: usize, _: &[f32], _: &[f32], _: *mut f32, _: usize, _: usize, _: usize, _: bool) {
    unreachable!("sgemm_avx2::available() is false off x86-64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut h = seed.wrapping_mul(6364136223846793005) | 1;
        (0..len)
            .map(|_| {
                h = h.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((h >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    /// Every edge case of the blocking (rows not a multiple of 6 or of 96,
    /// columns not of 16, depth not of 256, depth 0), both layouts of b, both
    /// write modes and row strides wider than the matrices, against a plain
    /// triple loop in f64.
    #[test]
    fn matches_a_triple_loop() {
        if !available() {
            eprintln!("no AVX2 + FMA here: nothing to check");
            return;
        }
        for &(m, n, k) in &[(1, 1, 1), (7, 17, 3), (97, 33, 257), (200, 48, 512), (13, 5, 0), (6, 16, 256)] {
            for transposed in [false, true] {
                for accumulate in [false, true] {
                    for parallel in [false, true] {
                        let (lda, ldc) = (k + 3, n + 5);
                        let a = values(m * lda, 1);
                        let b = values(k * n, 2);
                        let mut c = values(m * ldc, 3);
                        let before = c.clone();
                        let (b_rs, b_cs) = if transposed { (1, k) } else { (n, 1) };
                        unsafe {
                            sgemm(
                                (m, n, k),
                                a.as_ptr(),
                                lda,
                                b.as_ptr(),
                                b_rs,
                                b_cs,
                                c.as_mut_ptr(),
                                ldc,
                                accumulate,
                                parallel,
                            )
                        };
                        for i in 0..m {
                            for j in 0..ldc {
                                let got = c[i * ldc + j];
                                if j >= n {
                                    assert_eq!(got, before[i * ldc + j], "column {j} past n was written");
                                    continue;
                                }
                                let mut want: f64 =
                                    (0..k).map(|p| a[i * lda + p] as f64 * b[p * b_rs + j * b_cs] as f64).sum();
                                if accumulate {
                                    want += before[i * ldc + j] as f64;
                                }
                                assert!(
                                    (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                    "({m},{n},{k}) transposed {transposed} accumulate {accumulate}: c[{i},{j}] = {got}, want {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
