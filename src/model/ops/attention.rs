//! Fused multi-head self-attention over a packed [b, L, 3d] q|k|v tensor,
//! with backward to q, k and v.
//!
//! Going through candle ops costs a permute copy of q/k/v, a transpose copy
//! of the context, a scale, a mask add, and in backward the zero-padded
//! gradients of three slices. Here each (batch, head) pair runs its two
//! gemms straight on strided views of the packed input, writes its context
//! into the merged-heads layout, and keeps its probabilities for backward.

use std::sync::{Arc, Mutex};

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{f32_slice, softmax_backward_in_place, softmax_in_place, vectorized, SendPtr};

/// softmax(q kᵀ / sqrt(dh), masked keys excluded) v for every head.
/// `qkv` is [b, L, 3d] (q, then k, then v, heads contiguous within each);
/// `mask` is [b, L] (1 = attend). Returns [b, L, d].
pub fn attention(qkv: &Tensor, mask: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, l, d3) = qkv.dims3()?;
    if d3 % (3 * heads) != 0 {
        bail!("packed q|k|v width {d3} is not 3 × heads ({heads}) × head size");
    }
    if mask.dims() != [b, l] {
        bail!("attention mask has shape {:?}, expected [{b}, {l}]", mask.dims());
    }
    if !super::use_fused(qkv) {
        return reference(qkv, mask, heads);
    }
    let keep = attended_keys(mask)?;
    qkv.contiguous()?.apply_op1(Attention { heads, keep: Arc::new(keep), probs: Mutex::new(None) })
}

/// A [b, L] attention mask as flags (true = attend).
pub(super) fn attended_keys(mask: &Tensor) -> Result<Vec<bool>> {
    Ok(mask.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?.into_iter().map(|m| m != 0.0).collect())
}

/// The same computation with composed candle ops (any device).
pub fn reference(qkv: &Tensor, mask: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, l, d3) = qkv.dims3()?;
    let d = d3 / 3;
    let dh = d / heads;
    let qkv = qkv.reshape((b, l, 3, heads, dh))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let scores = q.matmul(&k.t()?)?;
    let probs = super::reference::masked_softmax(&scores, mask, 1.0 / (dh as f64).sqrt())?;
    probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, d))
}

struct Attention {
    heads: usize,
    /// [b * L]: whether each key is attended.
    keep: Arc<Vec<bool>>,
    /// The forward pass's probabilities [b, h, L, L], for backward.
    probs: Mutex<Option<Arc<Vec<f32>>>>,
}

/// Shape bookkeeping for one call.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub b: usize,
    pub l: usize,
    pub d: usize,
    pub heads: usize,
}

impl Dims {
    fn of(layout: &Layout, heads: usize) -> Result<Dims> {
        let (b, l, d3) = layout.shape().dims3()?;
        Ok(Dims::new(b, l, d3 / 3, heads))
    }
    pub(super) fn new(b: usize, l: usize, d: usize, heads: usize) -> Dims {
        Dims { b, l, d, heads }
    }
    /// 1/√(head size), the usual score scale (T5 folds it into its weights).
    pub(super) fn default_scale(self) -> f32 {
        default_scale(self.d, self.heads)
    }
}

/// 1/√(head size) for width `d` split over `heads`: the usual score scale.
pub(super) fn default_scale(d: usize, heads: usize) -> f32 {
    1.0 / ((d / heads) as f32).sqrt()
}

/// Where the sequences of a batch lie in a buffer of rows: sequence `i` is
/// rows `starts[i]..starts[i + 1]`. A padded [b, L] batch is `b` sequences of
/// `L` rows each (padded keys masked); a packed batch keeps only the real
/// rows of each sequence, so the row-wise products skip the padding.
#[derive(Clone, Debug)]
pub(super) struct Seqs {
    starts: Vec<usize>,
    /// Probabilities kept in all: heads × Σ len².
    probs_len: usize,
    heads: usize,
}

impl Seqs {
    /// `b` sequences of `l` rows.
    pub(super) fn uniform(b: usize, l: usize, heads: usize) -> Seqs {
        Seqs::packed(&vec![l; b], heads)
    }

    /// Sequences of the given lengths, one after the other.
    pub(super) fn packed(lens: &[usize], heads: usize) -> Seqs {
        let mut starts = vec![0];
        for &len in lens {
            starts.push(starts[starts.len() - 1] + len);
        }
        Seqs { starts, probs_len: heads * lens.iter().map(|&len| len * len).sum::<usize>(), heads }
    }

    pub(super) fn count(&self) -> usize {
        self.starts.len() - 1
    }

    /// The rows of sequence `i`.
    pub(super) fn rows_of(&self, i: usize) -> std::ops::Range<usize> {
        self.starts[i]..self.starts[i + 1]
    }

    /// Rows in all.
    pub(super) fn rows(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }

    /// Probabilities kept in all: heads × Σ len².
    pub(super) fn probs_len(&self) -> usize {
        self.probs_len
    }

    /// The first min(p, len) rows of each sequence, sequence by sequence
    /// (the prompt positions, for a prompt of p).
    pub(super) fn leading(&self, p: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        (0..self.count()).map(move |i| {
            let rows = self.rows_of(i);
            rows.start..rows.start + p.min(rows.len())
        })
    }

    /// Whether the first p rows of every sequence are all of its rows.
    pub(super) fn leading_is_all(&self, p: usize) -> bool {
        (0..self.count()).all(|i| self.rows_of(i).len() <= p)
    }

    /// The [`leading`](Self::leading) rows of `src` (rows of `width`), one
    /// after the other.
    pub(super) fn gather_leading(&self, p: usize, src: &[f32], width: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for r in self.leading(p) {
            out.extend_from_slice(&src[r.start * width..r.end * width]);
        }
        out
    }

    /// The inverse of [`gather_leading`](Self::gather_leading): `dst` (rows
    /// of `width`) gets the gathered rows back in place and zero elsewhere.
    pub(super) fn scatter_leading(&self, p: usize, gathered: &[f32], width: usize, dst: &mut [f32]) {
        dst.fill(0.0);
        let mut done = 0;
        for r in self.leading(p) {
            let n = r.len() * width;
            dst[r.start * width..r.end * width].copy_from_slice(&gathered[done..done + n]);
            done += n;
        }
    }

    /// [`Seqs::packed`] for an input of `rows` rows, which the lengths must sum to.
    pub(super) fn packed_rows(lens: &[usize], heads: usize, rows: usize) -> Result<Seqs> {
        let seqs = Seqs::packed(lens, heads);
        if seqs.rows() != rows {
            bail!("sequences of {} rows in all do not fit a packed input of {rows}", seqs.rows());
        }
        Ok(seqs)
    }

    /// Every (sequence, head) pair: its head, first row, length and where
    /// its L×L probabilities start, sequence by sequence.
    fn pairs(&self) -> Vec<Pair> {
        (0..self.count())
            .flat_map(|i| {
                let rows = self.rows_of(i);
                let len = rows.len();
                (0..self.heads).map(move |h| Pair { head: h, start: rows.start, len, probs_at: 0 })
            })
            .scan(0, |at, mut pair| {
                pair.probs_at = *at;
                *at += pair.len * pair.len;
                Some(pair)
            })
            .collect()
    }
}

/// One (sequence, head) pair of [`Seqs::pairs`].
#[derive(Clone, Copy)]
struct Pair {
    head: usize,
    start: usize,
    len: usize,
    probs_at: usize,
}

/// The frozen-linear backend when it is a system BLAS that runs on the
/// calling thread, looked up once.
fn sequential_blas() -> Option<&'static super::blas::SystemBlas> {
    static BLAS: std::sync::OnceLock<Option<&'static super::blas::SystemBlas>> = std::sync::OnceLock::new();
    // The built-in gemm crate is no system library: `system_blas` says so.
    *BLAS.get_or_init(|| super::blas::system_blas(super::blas::gemm_backend()).ok().filter(|blas| blas.is_sequential()))
}

/// dst (m×n, strides rs/cs) = lhs (m×k) · rhs (k×n), overwritten.
#[allow(clippy::too_many_arguments)]
unsafe fn mm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    dst_cs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
) {
    // attempt-pkg's AVX2 kernel where it is the frozen products' backend:
    // on Milan the gemm crate ran these at ~0.8 of its speed (perf, T5 step).
    if super::blas::gemm_backend() == super::blas::GemmBackend::Avx2 && dst_cs == 1 {
        // SAFETY: the caller's contract (the same extents as below); the
        // backend is only chosen where the CPU has AVX2 and FMA.
        unsafe {
            super::sgemm_avx2::sgemm(super::sgemm_avx2::Product {
                m,
                n,
                k,
                a: lhs,
                a_rs: lhs_rs,
                a_cs: lhs_cs,
                b: rhs,
                b_rs: rhs_rs,
                b_cs: rhs_cs,
                dst,
                ldc: dst_rs,
                accumulate: false,
                parallel: false,
            })
        };
        return;
    }
    // On a sequential system BLAS (oneMKL) when every operand is row- or
    // column-major (all calls here are): on a Xeon (AVX-512, 2 cores) a step
    // measured 534-577 ms against 549-580 with these products on the gemm
    // crate (six alternating runs; README, issue 17).
    if let Some(blas) = sequential_blas() {
        let major = |rs: usize, cs: usize| match (rs, cs) {
            (ld, 1) => Some((ld, false)),
            (1, ld) => Some((ld, true)),
            _ => None,
        };
        if let (Some((lda, at)), Some((ldb, bt)), (ldc, 1)) =
            (major(lhs_rs, lhs_cs), major(rhs_rs, rhs_cs), (dst_rs, dst_cs))
        {
            // SAFETY: the caller's contract (the same extents as below).
            unsafe { blas.sgemm_unchecked((m, n, k), lhs, lda, at, rhs, ldb, bt, dst, ldc, false) };
            return;
        }
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        dst_rs as isize,
        false,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "attempt-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = f32_slice(self.name(), s, layout)?;
        let dims = Dims::of(layout, self.heads)?;
        let mut ctx = super::fill::zeros(dims.b * dims.l * dims.d);
        let mut probs = super::fill::zeros(dims.b * dims.heads * dims.l * dims.l);
        forward_into(qkv, &self.keep, None, dims.default_scale(), dims, &mut ctx, &mut probs);
        if let Ok(mut slot) = self.probs.lock() {
            *slot = Some(Arc::new(probs));
        }
        Ok((CpuStorage::F32(ctx), Shape::from((dims.b, dims.l, dims.d))))
    }

    fn bwd(&self, qkv: &Tensor, _ctx: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let probs = match self.probs.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => None,
        };
        let Some(probs) = probs else { bail!("attention backward without a forward pass") };
        let op = AttentionBackward { heads: self.heads, probs };
        Ok(Some(qkv.apply_op2_no_bwd(&g.contiguous()?, &op)?))
    }
}

struct AttentionBackward {
    heads: usize,
    probs: Arc<Vec<f32>>,
}

impl CustomOp2 for AttentionBackward {
    fn name(&self) -> &'static str {
        "attempt-attention-bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, layout: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = f32_slice(self.name(), s, layout)?;
        let g = f32_slice(self.name(), gs, gl)?;
        let dims = Dims::of(layout, self.heads)?;
        let mut dqkv = super::fill::zeros(qkv.len());
        backward_into(qkv, &self.probs, g, dims.default_scale(), dims, &mut dqkv)?;
        Ok((CpuStorage::F32(dqkv), layout.shape().clone()))
    }
}

/// The forward pass on plain slices: `qkv` [b, L, 3d] → `ctx` [b, L, d],
/// keeping the probabilities [b, h, L, L] in `probs`. Scores are
/// `scale · q·k + bias`, `bias` [h, L, L] shared by the batch (T5's relative
/// positions); keys whose `keep` ([b, L]) is false get probability 0.
pub(super) fn forward_into(
    qkv: &[f32],
    keep: &[bool],
    bias: Option<&[f32]>,
    scale: f32,
    dims: Dims,
    ctx: &mut [f32],
    probs: &mut [f32],
) {
    let Dims { b, l, d, heads, .. } = dims;
    debug_assert!(bias.is_none_or(|bias| bias.len() == heads * l * l));
    let seqs = Seqs::uniform(b, l, heads);
    forward_seqs(qkv, Some(keep), bias.map(|bias| (bias, l)), scale, d, &seqs, ctx, probs);
}

/// [`forward_into`] over the sequences `seqs` lays out in `qkv` [rows, 3d]
/// (`keep` [rows], `None`: every key attended); `bias` is [h, Lb, Lb] with
/// its row length Lb, for sequences of length Lb. `probs` is
/// `seqs.probs_len()` long.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_seqs(
    qkv: &[f32],
    keep: Option<&[bool]>,
    bias: Option<(&[f32], usize)>,
    scale: f32,
    d: usize,
    seqs: &Seqs,
    ctx: &mut [f32],
    probs: &mut [f32],
) {
    let (heads, rows) = (seqs.heads, seqs.rows());
    let dh = d / heads;
    debug_assert!(qkv.len() == rows * 3 * d && ctx.len() == rows * d && probs.len() == seqs.probs_len());
    debug_assert!(keep.is_none_or(|keep| keep.len() == rows));
    let ctx_ptr = SendPtr(ctx.as_mut_ptr());
    let d3 = 3 * d;
    let mut blocks = Vec::with_capacity(seqs.count() * heads);
    let mut rest = probs;
    for pair in seqs.pairs() {
        let (block, tail) = std::mem::take(&mut rest).split_at_mut(pair.len * pair.len);
        blocks.push((pair, block));
        rest = tail;
    }
    blocks.into_par_iter().for_each(|(Pair { head: h, start, len: l, .. }, p)| {
        if l == 0 {
            return;
        }
        let base = start * d3 + h * dh;
        let keep = keep.map(|keep| &keep[start..start + l]);
        // SAFETY: q, k, v are strided views inside `qkv` (row stride 3d);
        // `p` is this pair's own L×L block; the context columns
        // h*dh..(h+1)*dh of this sequence's rows are written by this task only.
        unsafe {
            let q = qkv.as_ptr().add(base);
            let k = q.add(d);
            let v = q.add(2 * d);
            mm(l, l, dh, p.as_mut_ptr(), l, 1, q, d3, 1, k, 1, d3);
            vectorized(
                #[inline(always)]
                || match bias {
                    None => {
                        for row in p.chunks_mut(l) {
                            softmax_in_place(row, scale, keep);
                        }
                    }
                    Some((bias, bl)) => {
                        let head_bias = &bias[h * bl * bl..(h + 1) * bl * bl];
                        for (row, bias) in p.chunks_mut(l).zip(head_bias.chunks(bl)) {
                            for (v, &b) in row.iter_mut().zip(bias) {
                                *v = *v * scale + b;
                            }
                            softmax_in_place(row, 1.0, keep);
                        }
                    }
                },
            );
            let c = ctx_ptr.get().add(start * d + h * dh);
            mm(l, dh, l, c, d, 1, p.as_ptr(), l, 1, v, d3, 1);
        }
    });
}

/// The backward pass on plain slices: from the context gradient `g`
/// [b, L, d] to `dqkv` [b, L, 3d] (every element written).
/// `scale` as in forward (the bias has no gradient).
pub(super) fn backward_into(
    qkv: &[f32],
    probs: &[f32],
    g: &[f32],
    scale: f32,
    dims: Dims,
    dqkv: &mut [f32],
) -> Result<()> {
    let Dims { b, l, d, heads, .. } = dims;
    backward_seqs(qkv, probs, g, scale, d, &Seqs::uniform(b, l, heads), dqkv)
}

/// [`backward_into`] over the sequences `seqs` lays out, as [`forward_seqs`].
pub(super) fn backward_seqs(
    qkv: &[f32],
    probs: &[f32],
    g: &[f32],
    scale: f32,
    d: usize,
    seqs: &Seqs,
    dqkv: &mut [f32],
) -> Result<()> {
    let (heads, rows) = (seqs.heads, seqs.rows());
    let dh = d / heads;
    if g.len() != rows * d || probs.len() != seqs.probs_len() || qkv.len() != rows * 3 * d || dqkv.len() != qkv.len() {
        bail!("attention backward: gradient or saved probabilities have the wrong size");
    }
    let d3 = 3 * d;
    let out = SendPtr(dqkv.as_mut_ptr());
    seqs.pairs().into_par_iter().for_each_init(Vec::new, |ds, Pair { head: h, start, len: l, probs_at }| {
        if l == 0 {
            return;
        }
        let p = &probs[probs_at..probs_at + l * l];
        ds.resize(l * l, 0.0);
        // SAFETY: reads strided views of qkv, g and this pair's
        // probabilities; writes only columns h*dh..(h+1)*dh of each of
        // the q, k and v thirds of this sequence's rows in dqkv, which no
        // other task touches.
        unsafe {
            let q = qkv.as_ptr().add(start * d3 + h * dh);
            let k = q.add(d);
            let v = q.add(2 * d);
            let gc = g.as_ptr().add(start * d + h * dh);
            // dP = dC · vᵀ
            mm(l, l, dh, ds.as_mut_ptr(), l, 1, gc, d, 1, v, 1, d3);
            // dS = scale · P ⊙ (dP − rowsum(dP ⊙ P))
            vectorized(
                #[inline(always)]
                || {
                    for (dr, pr) in ds[..l * l].chunks_mut(l).zip(p.chunks(l)) {
                        softmax_backward_in_place(dr, pr, scale);
                    }
                },
            );
            let dq = out.get().add(start * d3 + h * dh);
            let dk = dq.add(d);
            let dv = dq.add(2 * d);
            mm(l, dh, l, dq, d3, 1, ds.as_ptr(), l, 1, k, d3, 1); // dQ = dS · K
            mm(l, dh, l, dk, d3, 1, ds.as_ptr(), 1, l, q, d3, 1); // dK = dSᵀ · Q
            mm(l, dh, l, dv, d3, 1, p.as_ptr(), 1, l, gc, d, 1); // dV = Pᵀ · dC
        }
    });
    Ok(())
}
