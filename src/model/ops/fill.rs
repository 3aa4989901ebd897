//! The buffers a fused layer fills before a product accumulates into them
//! (bias rows, residual + bias, a copy of the incoming gradient), written by
//! every thread. At MiniLM's shapes a layer's forward fills 50 MB this way
//! (q|k|v and the feed-forward's 1,536-wide rows are the bulk); written by
//! the calling thread alone, those fills and their first-touch page faults
//! took ~10 % of a `backbone` forward on a 2-core Xeon while the other core
//! idled (perf, 2026-12-04).

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Elements per task: large enough that scheduling is noise beside the
/// copy, small enough that 2–16 threads share even a small buffer.
const CHUNK: usize = 1 << 15;

/// A vector of `len` elements, `block`-sized pieces of which `fill` writes
/// in parallel, given each piece's offset. Not `vec![0; len]` first: once
/// glibc has raised its mmap threshold, a large zeroed allocation is a
/// memset on the calling thread, which is the serial cost this module
/// removes.
fn build(len: usize, block: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(block.max(1))
        .enumerate()
        .for_each(|(i, piece)| fill(i * block, piece));
    // SAFETY: the pieces cover the first `len` elements of the capacity, and
    // every `fill` below writes each element of its piece.
    unsafe { out.set_len(len) };
    out
}

/// Copies `src` into `dst` (equal lengths).
fn write(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(s);
    }
}

/// `rows` copies of `row`, one after the other.
pub(super) fn repeat_row(row: &[f32], rows: usize) -> Vec<f32> {
    if row.is_empty() {
        return Vec::new();
    }
    let block = CHUNK.div_ceil(row.len()) * row.len();
    build(row.len() * rows, block, |_, piece| {
        for r in piece.chunks_exact_mut(row.len()) {
            write(r, row);
        }
    })
}

/// a + row, `row` broadcast over the rows of `a` (a last partial row gets
/// the leading part of `row`).
pub(super) fn add_row(a: &[f32], row: &[f32]) -> Vec<f32> {
    if row.is_empty() {
        return copy(a);
    }
    let block = CHUNK.div_ceil(row.len()) * row.len();
    build(a.len(), block, |at, piece| {
        let a = &a[at..at + piece.len()];
        for (out, a) in piece.chunks_mut(row.len()).zip(a.chunks(row.len())) {
            for ((o, &a), &r) in out.iter_mut().zip(a).zip(row) {
                o.write(a + r);
            }
        }
    })
}

/// A copy of `a`.
pub(super) fn copy(a: &[f32]) -> Vec<f32> {
    build(a.len(), CHUNK, |at, piece| write(piece, &a[at..at + piece.len()]))
}

/// `len` zeros.
pub(super) fn zeros(len: usize) -> Vec<f32> {
    build(len, CHUNK, |_, piece| piece.fill(MaybeUninit::new(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * 0.37).sin()).collect()
    }

    /// Against the obvious serial loops, bit for bit, at sizes below, at and
    /// across a task's chunk, with rows that do not divide it, and empty.
    #[test]
    fn fills_match_serial_loops() {
        for (width, rows) in [(0, 5), (3, 0), (1, 1), (7, 3), (384, 2624), (1536, 40), (1000, 33), (1 << 15, 2)] {
            let row = values(width);
            let serial: Vec<f32> = (0..rows).flat_map(|_| row.iter().copied()).collect();
            assert_eq!(repeat_row(&row, rows), serial, "repeat_row {width} × {rows}");

            let a: Vec<f32> = values(width * rows + width / 2).iter().map(|v| v * 3.0 + 1.0).collect();
            let mut expected = a.clone();
            if width > 0 {
                for chunk in expected.chunks_mut(width) {
                    for (o, &r) in chunk.iter_mut().zip(&row) {
                        *o += r;
                    }
                }
            }
            assert_eq!(add_row(&a, &row), expected, "add_row {width} × {rows}");
            assert_eq!(copy(&a), a, "copy of {}", a.len());
            assert_eq!(zeros(a.len()), vec![0f32; a.len()], "zeros({})", a.len());
        }
    }
}
