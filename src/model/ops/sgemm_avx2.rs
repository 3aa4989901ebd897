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

use super::cpu::{give_thread_buffer, take_thread_buffer, SendPtr, ThreadBuffer};

/// Rows and columns of the micro-kernel's tile of the result.
const MR: usize = 6;
const NR: usize = 16;
/// Depth of one packed block: an A micro-panel (6 × 256) and a B panel
/// (256 × 16, 16 KB) stay in L1 while the kernel runs.
const KC: usize = 256;
/// Rows per task: a packed A block of 96 × 256 (96 KB) stays in L2 while
/// every B panel passes over it.
const MC: usize = 96;
/// A is packed only for products at least this many 16-column panels wide.
const PACK_A_MIN_PANELS: usize = 8;

/// Whether this CPU can run the kernel.
pub fn available() -> bool {
    super::cpu::has_avx2_fma()
}

/// One product: dst[m, n] (+= when `accumulate`) a[m, k] · b[k, n], where
/// element (i, p) of a is `a[i * a_rs + p * a_cs]`, element (p, j) of b is
/// `b[p * b_rs + j * b_cs]`, and element (i, j) of dst is `dst[i * ldc + j]`;
/// `parallel`: split over rayon's threads.
#[derive(Clone, Copy)]
pub struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: *const f32,
    pub a_rs: usize,
    pub a_cs: usize,
    pub b: *const f32,
    pub b_rs: usize,
    pub b_cs: usize,
    pub dst: *mut f32,
    pub ldc: usize,
    pub accumulate: bool,
    pub parallel: bool,
}

impl Product {
    /// Does a product with nothing to multiply (m, n or k zero: dst is
    /// zeroed, or kept when accumulating) and says whether it was one.
    ///
    /// # Safety
    /// dst valid for m rows of n elements at stride ldc.
    pub(super) unsafe fn finish_if_empty(&self) -> bool {
        let Product { m, n, k, dst, ldc, accumulate, .. } = *self;
        if m == 0 || n == 0 {
            return true;
        }
        if k > 0 {
            return false;
        }
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of dst has n writable elements.
                unsafe { std::ptr::write_bytes(dst.add(i * ldc), 0, n) };
            }
        }
        true
    }
}

/// Computes `product`.
///
/// # Safety
/// [`available`] must be true, and the three pointers must be valid for
/// every element the strides reach (dst for writing, not aliased).
pub unsafe fn sgemm(product: Product) {
    // SAFETY: forwarded from the caller.
    if unsafe { product.finish_if_empty() } {
        return;
    }
    let Product { m, n, parallel, .. } = product;
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    // Packing A pays when each of its micro-panels meets many B panels; with
    // few (attention's 64-wide heads) the kernel reads A in place: packing
    // cost as much as half the product there.
    let pack_a_block = n.div_ceil(NR) >= PACK_A_MIN_PANELS;
    // SAFETY: forwarded from the caller.
    unsafe {
        if m.div_ceil(MC) < 2 * threads {
            by_column_panels(product, pack_a_block)
        } else {
            by_row_blocks(product, pack_a_block)
        }
    }
}

/// Depth blocks of equal size ≤ KC (k = 384 is two of 192, not 256 + 128).
fn depth_step(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC))
}

/// Many rows: each task owns 96 rows and packs its A block while the whole
/// of B, packed once, passes over it.
///
/// # Safety
/// As [`sgemm`], with m, n, k > 0.
unsafe fn by_row_blocks(product: Product, pack_a_block: bool) {
    let Product { m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, dst, ldc, accumulate, parallel } = product;
    // B packed once per call into panels of 16 columns, each k × 16 and
    // zero-padded past column n: panel j holds columns 16j..16j+16.
    let panels = n.div_ceil(NR);
    let mut packed_b = take_thread_buffer(&PACKED, panels * k * NR);
    let b_addr = b as usize;
    // SAFETY: panel j's columns and every depth are inside b.
    let pack_panel =
        |(j, panel): (usize, &mut [f32])| unsafe { pack_b_panel(b_addr as *const f32, b_rs, b_cs, n, j, 0, k, panel) };
    if parallel {
        packed_b.par_chunks_mut(k * NR).enumerate().for_each(pack_panel);
    } else {
        packed_b.chunks_mut(k * NR).enumerate().for_each(pack_panel);
    }
    let (a_addr, out) = (a as usize, SendPtr(dst));
    let kc_step = depth_step(k);
    let row_block = |packed_a: &mut Vec<f32>, start: usize| {
        let rows = MC.min(m - start);
        let micro_panels = rows.div_ceil(MR);
        if pack_a_block {
            packed_a.resize(micro_panels * MR * kc_step, 0.0);
        }
        let a = a_addr as *const f32;
        for pc in (0..k).step_by(kc_step) {
            let kc = kc_step.min(k - pc);
            if pack_a_block {
                // SAFETY: rows start..start+rows and depths pc..pc+kc are inside a.
                unsafe { pack_a(a, (a_rs, a_cs), start, rows, pc, kc, packed_a) };
            }
            let overwrite = pc == 0 && !accumulate;
            for j in 0..panels {
                let bp = &packed_b[j * k * NR + pc * NR..][..kc * NR];
                let cols = NR.min(n - j * NR);
                for mp in 0..micro_panels {
                    let (i, live) = (start + mp * MR, MR.min(m - start - mp * MR));
                    let packed = pack_a_block.then(|| &packed_a[mp * MR * kc..][..kc * MR]);
                    // SAFETY: the tile's rows i..i+live and columns
                    // 16j..16j+cols are inside dst, and only this task
                    // writes rows start..start+rows; A's rows i..i+live at
                    // depths pc..pc+kc are inside a.
                    unsafe {
                        tile(
                            packed,
                            (a, a_rs, a_cs),
                            (i, live, pc, kc),
                            bp,
                            out.get().add(i * ldc + j * NR),
                            ldc,
                            cols,
                            overwrite,
                        )
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
    give_thread_buffer(&PACKED, packed_b);
}

/// Few rows (a decoder's 64, a classifier head): row blocks would leave
/// cores idle, and packing the whole of B would write (and read back from
/// memory) a copy as large as B for a few rows of work — T5's 32 128-word
/// output layer at 64 rows ran at under half the kernel's large-product speed
/// that way (34 against 77 GFLOP/s in one run), the 512-wide ones at a quarter.
/// Here A (where packing pays) is packed once and shared; each task owns a
/// run of 16-column panels and packs one 16 KB B panel at a time, so B is
/// read once, in place.
///
/// # Safety
/// As [`sgemm`], with m, n, k > 0.
unsafe fn by_column_panels(product: Product, pack_a_block: bool) {
    let Product { m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, dst, ldc, accumulate, parallel } = product;
    let kc_step = depth_step(k);
    let depth_blocks = k.div_ceil(kc_step);
    let micro_panels = m.div_ceil(MR);
    // Depth block q of A at q · block_len, as micro-panels [mp][p][6].
    let block_len = micro_panels * MR * kc_step;
    let mut packed_a = take_thread_buffer(&PACKED, if pack_a_block { depth_blocks * block_len } else { 0 });
    let a_addr = a as usize;
    let pack = |(q, block): (usize, &mut [f32])| {
        let pc = q * kc_step;
        // SAFETY: every row and depths pc..pc+kc are inside a.
        unsafe { pack_a(a_addr as *const f32, (a_rs, a_cs), 0, m, pc, kc_step.min(k - pc), block) };
    };
    if pack_a_block && parallel {
        packed_a.par_chunks_mut(block_len).enumerate().for_each(pack);
    } else if pack_a_block {
        packed_a.chunks_mut(block_len).enumerate().for_each(pack);
    }
    let panels = n.div_ceil(NR);
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    // A few runs per thread keep the cores evenly busy.
    let per_task = panels.div_ceil((4 * threads).min(panels));
    let (b_addr, out, shared_a) = (b as usize, SendPtr(dst), &packed_a);
    let task = |first: usize| {
        let mut bp = [0f32; KC * NR];
        let last = (first + per_task).min(panels);
        for q in 0..depth_blocks {
            let pc = q * kc_step;
            let kc = kc_step.min(k - pc);
            let block = if pack_a_block { &shared_a[q * block_len..][..block_len] } else { &[][..] };
            let overwrite = q == 0 && !accumulate;
            for j in first..last {
                // SAFETY: panel j's columns and depths pc..pc+kc are inside b.
                unsafe { pack_b_panel(b_addr as *const f32, b_rs, b_cs, n, j, pc, kc, &mut bp[..kc * NR]) };
                let cols = NR.min(n - j * NR);
                for mp in 0..micro_panels {
                    let (i, live) = (mp * MR, MR.min(m - mp * MR));
                    let packed = pack_a_block.then(|| &block[mp * MR * kc..][..kc * MR]);
                    let a = (a_addr as *const f32, a_rs, a_cs);
                    // SAFETY: the tile's rows i..i+live and columns
                    // 16j..16j+cols are inside dst, and only this task
                    // writes panels first..last; A's rows i..i+live at
                    // depths pc..pc+kc are inside a.
                    unsafe {
                        tile(
                            packed,
                            a,
                            (i, live, pc, kc),
                            &bp[..kc * NR],
                            out.get().add(i * ldc + j * NR),
                            ldc,
                            cols,
                            overwrite,
                        )
                    };
                }
            }
        }
    };
    if parallel {
        (0..panels).into_par_iter().step_by(per_task).for_each(task);
    } else {
        (0..panels).step_by(per_task).for_each(task);
    }
    give_thread_buffer(&PACKED, packed_a);
}

/// One 6 × 16 tile (rows i..i+live, depths pc..pc+kc): from A's packed
/// micro-panel when there is one, else from A in place.
///
/// # Safety
/// As [`micro_kernel`]; rows i..i+live at depths pc..pc+kc inside a.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    packed: Option<&[f32]>,
    (a, a_rs, a_cs): (*const f32, usize, usize),
    (i, live, pc, kc): (usize, usize, usize, usize),
    bp: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
    overwrite: bool,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match packed {
            Some(panel) => micro_kernel(kc, Packed(panel.as_ptr()), bp, c, ldc, live, cols, overwrite),
            None => micro_kernel(kc, InPlace::new(a, (a_rs, a_cs), i, live, pc), bp, c, ldc, live, cols, overwrite),
        }
    }
}

thread_local! {
    /// This thread's packing buffer (every packing routine writes each
    /// element it owns).
    static PACKED: ThreadBuffer<f32> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows start..start+rows of a's depths pc..pc+kc, as micro-panels of 6 rows
/// ([mp][p][6], micro-panel stride 6 · kc), zero rows past the last. Reads
/// along a's contiguous direction (rows, or 6 rows at a time of a
/// transposed a).
///
/// # Safety
/// Those rows and depths are inside a (strides a_rs, a_cs); dst holds
/// rows.div_ceil(6) · 6 · kc elements.
unsafe fn pack_a(
    a: *const f32,
    (a_rs, a_cs): (usize, usize),
    start: usize,
    rows: usize,
    pc: usize,
    kc: usize,
    dst: &mut [f32],
) {
    for mp in 0..rows.div_ceil(MR) {
        let panel = &mut dst[mp * MR * kc..][..kc * MR];
        let live = MR.min(rows - mp * MR);
        // SAFETY: rows start + 6mp .. + live at depth pc are inside a.
        let first = unsafe { a.add((start + mp * MR) * a_rs + pc * a_cs) };
        if live == MR && a_cs == 1 {
            // Six rows side by side, each read front to back.
            // SAFETY: as `first`; each row has kc depths from pc.
            let src: [*const f32; MR] = std::array::from_fn(|r| unsafe { first.add(r * a_rs) });
            for (p, column) in panel.chunks_exact_mut(MR).enumerate() {
                for (v, row) in column.iter_mut().zip(src) {
                    // SAFETY: p < kc.
                    *v = unsafe { *row.add(p) };
                }
            }
        } else {
            for (p, column) in panel.chunks_exact_mut(MR).enumerate() {
                for (r, v) in column.iter_mut().enumerate() {
                    // SAFETY: r < live (row inside a), p < kc; rows past
                    // the last are zero.
                    *v = if r < live { unsafe { *first.add(r * a_rs + p * a_cs) } } else { 0.0 };
                }
            }
        }
    }
}

/// Columns 16j..16j+16 of b's depths pc..pc+kc as [p][16], zero past n.
/// Reads along b's contiguous direction: rows of 16 when b is row-major,
/// one column at a time when it is a transposed weight.
///
/// # Safety
/// Columns 16j..min(16j+16, n) and depths pc..pc+kc are inside b; dst holds
/// kc · 16 elements.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_b_panel(
    b: *const f32,
    b_rs: usize,
    b_cs: usize,
    n: usize,
    j: usize,
    pc: usize,
    kc: usize,
    dst: &mut [f32],
) {
    let (col0, cols) = (j * NR, NR.min(n - j * NR));
    if b_cs == 1 {
        for (p, row) in dst[..kc * NR].chunks_exact_mut(NR).enumerate() {
            // SAFETY: row pc + p, columns col0..col0+cols are inside b.
            let src = unsafe { std::slice::from_raw_parts(b.add((pc + p) * b_rs + col0), cols) };
            row[..cols].copy_from_slice(src);
            row[cols..].fill(0.0);
        }
    } else {
        for c in 0..cols {
            // SAFETY: column col0 + c, depths pc..pc+kc are inside b.
            let src = unsafe { b.add(pc * b_rs + (col0 + c) * b_cs) };
            for p in 0..kc {
                // SAFETY: p < kc.
                dst[p * NR + c] = unsafe { *src.add(p * b_rs) };
            }
        }
        if cols < NR {
            for row in dst[..kc * NR].chunks_exact_mut(NR) {
                row[cols..].fill(0.0);
            }
        }
    }
}

/// Where the micro-kernel reads element (r, p) of its 6 rows of A.
trait MicroPanel: Copy {
    /// # Safety
    /// r < 6 and p < the kernel's depth.
    unsafe fn at(self, r: usize, p: usize) -> *const f32;
}

/// A packed micro-panel [p][6].
#[derive(Clone, Copy)]
struct Packed(*const f32);

impl MicroPanel for Packed {
    #[inline(always)]
    unsafe fn at(self, r: usize, p: usize) -> *const f32 {
        // SAFETY: the caller's contract; the panel holds kc × 6 elements.
        unsafe { self.0.add(p * MR + r) }
    }
}

/// Six rows of A read in place: row r starts at `rows[r]`, depth p is
/// `p · cs` further on (rows past the matrix repeat its last one; their
/// results are never stored).
#[derive(Clone, Copy)]
struct InPlace {
    rows: [*const f32; MR],
    cs: usize,
}

impl InPlace {
    /// Rows i..i+live of a (strides a_rs, a_cs) from depth pc on.
    ///
    /// # Safety
    /// live ≥ 1 and those rows are inside a.
    unsafe fn new(a: *const f32, (a_rs, a_cs): (usize, usize), i: usize, live: usize, pc: usize) -> Self {
        // SAFETY: every row pointer is one of rows i..i+live.
        let rows = std::array::from_fn(|r| unsafe { a.add((i + r.min(live - 1)) * a_rs + pc * a_cs) });
        Self { rows, cs: a_cs }
    }
}

impl MicroPanel for InPlace {
    #[inline(always)]
    unsafe fn at(self, r: usize, p: usize) -> *const f32 {
        // SAFETY: the caller's contract; row r has the kernel's depth.
        unsafe { self.rows[r].add(p * self.cs) }
    }
}

/// c[rows, cols] (=, or += unless `overwrite`) the 6 × 16 product of the
/// micro-panel `a` (kc deep) and the packed panel `b` ([kc][16]).
///
/// # Safety
/// AVX2 and FMA; `a` readable for kc depths; c valid for rows × cols
/// elements at row stride ldc.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel<A: MicroPanel>(
    kc: usize,
    a: A,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    overwrite: bool,
) {
    use std::arch::x86_64::*;
    debug_assert!(b.len() >= kc * NR);
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
    let bp = b.as_ptr();
    let step = |acc: &mut [[__m256; 2]; MR], p: usize| {
        // SAFETY: p < kc; a has kc depths, b holds kc × 16 elements.
        unsafe {
            let b0 = _mm256_loadu_ps(bp.add(p * NR));
            let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.at(r, p));
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
unsafe fn micro_kernel<A: MicroPanel>(_: usize, _: A, _: &[f32], _: *mut f32, _: usize, _: usize, _: usize, _: bool) {
    unreachable!("sgemm_avx2::available() is false off x86-64")
}

#[cfg(test)]
mod tests {
    use super::super::product_cases::Case;
    use super::*;

    /// Every edge case of the blocking (rows not a multiple of 6 or of 96,
    /// columns not of 16, depth not of 256, depth 0), both layouts of a and b, both
    /// write modes, row strides wider than the matrices and both task plans
    /// (row blocks, column panels), serial and parallel, against a plain
    /// triple loop in f64.
    #[test]
    fn matches_a_triple_loop() {
        if !available() {
            eprintln!("no AVX2 + FMA here: nothing to check");
            return;
        }
        // sgemm's own choice, then each plan with and without packing A.
        let plans = [
            "chosen",
            "row blocks, packed A",
            "row blocks, A in place",
            "column panels, packed A",
            "column panels, A in place",
        ];
        let shapes = [(1, 1, 1), (7, 17, 3), (97, 33, 257), (200, 48, 512), (13, 5, 0), (6, 16, 256), (64, 200, 600)];
        for plan_name in plans {
            for mut case in Case::all(&shapes) {
                if case.k == 0 && plan_name != "chosen" {
                    continue; // the plans take k > 0; sgemm answers k = 0 itself
                }
                let product = case.product();
                unsafe {
                    match plan_name {
                        "chosen" => sgemm(product),
                        "row blocks, packed A" => by_row_blocks(product, true),
                        "row blocks, A in place" => by_row_blocks(product, false),
                        "column panels, packed A" => by_column_panels(product, true),
                        _ => by_column_panels(product, false),
                    }
                };
                case.check(|i, j, got, before| {
                    let mut want: f64 = (0..case.k).map(|p| case.a_at(i, p) as f64 * case.b_at(p, j) as f64).sum();
                    if case.accumulate {
                        want += before as f64;
                    }
                    assert!(
                        (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{plan_name} {}: c[{i},{j}] = {got}, want {want}",
                        case.label
                    );
                });
            }
        }
    }
}
