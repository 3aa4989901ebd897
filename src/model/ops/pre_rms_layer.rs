//! A whole T5 encoder block (pre-RMS-norm, relative-position self-attention,
//! ReLU or gated-GELU feed-forward, no biases) as one op with a hand-written
//! backward to its input — the T5 counterpart of [`super::PostLnLayer`].
//!
//! Forward keeps q|k|v, the attention probabilities, the sum after the
//! attention residual, the FFN pre-activations and the two norms' 1/rms;
//! nothing when no gradient is wanted.

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::activation::gelu_tanh_and_derivative;
use super::attention::{self, attended_keys, Seqs};
use super::cpu::{f32_slice, vectorized, with_cpu_slices, SavedForward};
use super::fill;
use super::linear::{linear_backward_into, linear_backward_strided, linear_into, linear_strided, Rows};
use super::rms_norm::{rms_rows, rms_rows_backward_add};
use super::scratch::Scratch;

/// The feed-forward shapes the fused block runs (the others — exact GELU,
/// SiLU — take the single-op path).
#[derive(Clone)]
pub enum PreRmsFeedForward {
    /// T5 v1.0: relu(x Wᵢᵀ) Wₒᵀ.
    Relu { wi: Tensor },
    /// T5 v1.1 / FLAN: (gelu_tanh(x W₀ᵀ) ⊙ x W₁ᵀ) Wₒᵀ.
    GatedGeluTanh { wi_0: Tensor, wi_1: Tensor },
}

/// The frozen weights of one T5 encoder block; linear weights are [out, in].
#[derive(Clone)]
pub struct PreRmsLayer {
    pub attn_norm: Tensor,
    /// [inner, d] each, inner = heads · d_kv.
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    /// [d, inner].
    pub o: Tensor,
    pub ffn_norm: Tensor,
    pub ffn: PreRmsFeedForward,
    /// [d, d_ff].
    pub wo: Tensor,
    pub heads: usize,
    pub eps: f64,
}

impl PreRmsLayer {
    /// x [b, L, d] → x + attn(rms(x)), then + FFN(rms(·)). `position_bias` is
    /// [heads, L, L] (added to the unscaled scores, shared by the batch);
    /// `mask` [b, L] (1 = attend). CPU and f32 only: see [`Self::supports`].
    pub fn forward(&self, x: &Tensor, mask: &Tensor, position_bias: &Arc<Vec<f32>>) -> Result<Tensor> {
        let l = x.dims3()?.1;
        self.forward_prompted(x, mask, position_bias, l)
    }

    /// [`forward`](Self::forward) for an input whose first `prompt_len`
    /// positions are a soft prompt and the rest frozen text: the same
    /// output, but backward gives the prompt positions their input gradient
    /// and the text positions none (zero), skipping the text rows' q/k/v
    /// input products — nothing trainable lies upstream of frozen text (as
    /// `PostLnLayer::forward_prompted`).
    pub fn forward_prompted(
        &self,
        x: &Tensor,
        mask: &Tensor,
        position_bias: &Arc<Vec<f32>>,
        prompt_len: usize,
    ) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        if prompt_len > l {
            bail!("a prompt of {prompt_len} positions does not fit an input of {l}");
        }
        let inner = self.q.dim(0)?;
        if mask.dims() != [b, l] {
            bail!("attention mask has shape {:?}, expected [{b}, {l}]", mask.dims());
        }
        if self.q.dims() != [inner, d] || inner % self.heads != 0 {
            bail!("T5 block with q of shape {:?} and {} heads got input width {d}", self.q.dims(), self.heads);
        }
        if position_bias.len() != self.heads * l * l {
            bail!("position bias of {} values for {} heads × {l} × {l}", position_bias.len(), self.heads);
        }
        if !Self::supports(x) {
            bail!("the fused T5 block runs on CPU f32 tensors only");
        }
        let op = FusedBlock {
            layer: self.clone(),
            seqs: Seqs::uniform(b, l, self.heads),
            keep: Some(attended_keys(mask)?),
            bias: position_bias.clone(),
            bias_len: l,
            grad_positions: prompt_len,
            saved: SavedForward::new(x.track_op()),
        };
        x.contiguous()?.apply_op1(op)
    }

    /// The block over a packed batch: x [rows, d] holds sequences of the
    /// given `lengths` one after the other, no padding, every position
    /// attended (see `PostLnLayer::forward_packed`). `position_bias` is
    /// [heads, Lb, Lb] for some Lb at least as long as every sequence; a
    /// sequence of length n reads its top-left n × n block. Backward gives
    /// each sequence's first `prompt_len` positions their input gradient and
    /// the others none, as [`forward_prompted`](Self::forward_prompted) (a
    /// `prompt_len` as long as the longest sequence: every position).
    pub fn forward_packed(
        &self,
        x: &Tensor,
        lengths: &[usize],
        position_bias: &Arc<Vec<f32>>,
        prompt_len: usize,
    ) -> Result<Tensor> {
        let (rows, d) = x.dims2()?;
        let inner = self.q.dim(0)?;
        let seqs = Seqs::packed_rows(lengths, self.heads, rows)?;
        if self.q.dims() != [inner, d] || inner % self.heads != 0 {
            bail!("T5 block with q of shape {:?} and {} heads got input width {d}", self.q.dims(), self.heads);
        }
        let bias_len = ((position_bias.len() / self.heads.max(1)) as f64).sqrt().round() as usize;
        if self.heads * bias_len * bias_len != position_bias.len() || lengths.iter().any(|&n| n > bias_len) {
            bail!(
                "position bias of {} values does not cover sequences of up to {:?} positions",
                position_bias.len(),
                lengths.iter().max()
            );
        }
        if !Self::supports(x) {
            bail!("the fused T5 block runs on CPU f32 tensors only");
        }
        let op = FusedBlock {
            layer: self.clone(),
            seqs,
            keep: None,
            bias: position_bias.clone(),
            bias_len,
            grad_positions: prompt_len,
            saved: SavedForward::new(x.track_op()),
        };
        x.contiguous()?.apply_op1(op)
    }

    /// Whether [`Self::forward`] can run on `x` (else use the single ops).
    pub fn supports(x: &Tensor) -> bool {
        super::use_fused(x)
    }

    /// The weights in the order the kernels unpack them.
    fn tensors(&self) -> Vec<&Tensor> {
        let mut ts = vec![&self.attn_norm, &self.q, &self.k, &self.v, &self.o, &self.ffn_norm, &self.wo];
        match &self.ffn {
            PreRmsFeedForward::Relu { wi } => ts.push(wi),
            PreRmsFeedForward::GatedGeluTanh { wi_0, wi_1 } => ts.extend([wi_0, wi_1]),
        }
        ts
    }
}

struct Saved {
    attn_rstd: Vec<f32>,
    qkv: Scratch,
    probs: Scratch,
    /// x + attention output [m, d], the FFN norm's input.
    mid: Vec<f32>,
    ffn_rstd: Vec<f32>,
    /// FFN pre-activation [m, ff] (gated: W₀ then W₁, [m, 2·ff]).
    pre: Scratch,
}

struct FusedBlock {
    layer: PreRmsLayer,
    /// Where the sequences lie in the input's rows.
    seqs: Seqs,
    /// Per row: whether its key is attended (`None`: all are).
    keep: Option<Vec<bool>>,
    /// [heads, bias_len, bias_len].
    bias: Arc<Vec<f32>>,
    bias_len: usize,
    /// Backward computes the input gradient of each sequence's positions
    /// 0..grad_positions only (the others' stays zero).
    grad_positions: usize,
    saved: SavedForward<Saved>,
}

const CHUNK: usize = 4096;

impl FusedBlock {
    /// The FFN's activation [m, ff] from its pre-activation.
    fn activate(&self, pre: &[f32], ff: usize) -> Scratch {
        // Scratch: every element is written below.
        let mut act = Scratch::take(pre.len() / self.width_factor());
        match self.layer.ffn {
            PreRmsFeedForward::Relu { .. } => {
                act.par_chunks_mut(CHUNK).zip(pre.par_chunks(CHUNK)).for_each(|(a, u)| {
                    vectorized(
                        #[inline(always)]
                        || {
                            for (a, &u) in a.iter_mut().zip(u) {
                                *a = u.max(0.0);
                            }
                        },
                    )
                });
            }
            PreRmsFeedForward::GatedGeluTanh { .. } => {
                act.par_chunks_mut(ff).zip(pre.par_chunks(2 * ff)).for_each(|(a, u)| {
                    let (u0, u1) = u.split_at(ff);
                    for ((a, &u0), &u1) in a.iter_mut().zip(u0).zip(u1) {
                        *a = gelu_tanh_and_derivative(u0).0 * u1;
                    }
                });
            }
        }
        act
    }

    /// From the activation's gradient `da` [m, ff] to the pre-activation's.
    fn activation_backward(&self, mut da: Scratch, pre: &[f32], ff: usize) -> Scratch {
        match self.layer.ffn {
            PreRmsFeedForward::Relu { .. } => {
                da.par_chunks_mut(CHUNK).zip(pre.par_chunks(CHUNK)).for_each(|(g, u)| {
                    vectorized(
                        #[inline(always)]
                        || {
                            for (g, &u) in g.iter_mut().zip(u) {
                                *g = if u > 0.0 { *g } else { 0.0 };
                            }
                        },
                    )
                });
                da
            }
            PreRmsFeedForward::GatedGeluTanh { .. } => {
                let mut dpre = Scratch::take(pre.len());
                dpre.par_chunks_mut(2 * ff).zip(pre.par_chunks(2 * ff).zip(da.par_chunks(ff))).for_each(
                    |(dp, (u, g))| {
                        let (d0, d1) = dp.split_at_mut(ff);
                        let (u0, u1) = u.split_at(ff);
                        for ((((d0, d1), &u0), &u1), &g) in d0.iter_mut().zip(d1).zip(u0).zip(u1).zip(g) {
                            let (act, dact) = gelu_tanh_and_derivative(u0);
                            *d0 = g * u1 * dact;
                            *d1 = g * act;
                        }
                    },
                );
                dpre
            }
        }
    }

    fn width_factor(&self) -> usize {
        match self.layer.ffn {
            PreRmsFeedForward::Relu { .. } => 1,
            PreRmsFeedForward::GatedGeluTanh { .. } => 2,
        }
    }
}

impl CustomOp1 for FusedBlock {
    fn name(&self) -> &'static str {
        "attempt-t5-encoder-block"
    }

    fn cpu_fwd(&self, s: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, layout)?;
        let d = layout.shape().dims().last().copied().unwrap_or(0);
        let m = self.seqs.rows();
        if x.len() != m * d {
            bail!("{}: {} values for {m} rows of {d}", self.name(), x.len());
        }
        let inner = self.layer.q.dim(0)?;
        let ff = self.layer.wo.dim(1)?;
        let eps = self.layer.eps as f32;
        let (y, saved) = with_cpu_slices(self.name(), &self.layer.tensors(), |w| {
            let (attn_norm, wq, wk, wv, wo_attn, ffn_norm, wo, wi) =
                (w[0], w[1], w[2], w[3], w[4], w[5], w[6], &w[7..]);
            // Scratch buffers: each kernel below writes every element of its own.
            let mut normed = Scratch::take(m * d);
            let mut attn_rstd = vec![0f32; m];
            rms_rows(x, attn_norm, eps, &mut attn_rstd, &mut normed);
            let mut qkv = Scratch::take(m * 3 * inner);
            let input = Rows { data: &normed, row_stride: d };
            for (i, wp) in [wq, wk, wv].into_iter().enumerate() {
                linear_strided(&mut qkv[i * inner..], 3 * inner, input, wp, (m, inner, d), false)?;
            }
            let mut ctx = Scratch::take(m * inner);
            let mut probs = Scratch::take(self.seqs.probs_len());
            // T5 folds 1/√d_kv into its initialisation: scores are unscaled.
            let (keep, bias) = (self.keep.as_deref(), Some((self.bias.as_slice(), self.bias_len)));
            attention::forward_seqs(&qkv, keep, bias, 1.0, inner, &self.seqs, &mut ctx, &mut probs);
            let mut mid = fill::copy(x);
            linear_into(&mut mid, &ctx, wo_attn, d, inner, true)?;
            drop(ctx);

            let mut ffn_rstd = vec![0f32; m];
            rms_rows(&mid, ffn_norm, eps, &mut ffn_rstd, &mut normed);
            let mut pre = Scratch::take(m * ff * wi.len());
            let input = Rows { data: &normed, row_stride: d };
            for (i, wp) in wi.iter().enumerate() {
                linear_strided(&mut pre[i * ff..], wi.len() * ff, input, wp, (m, ff, d), false)?;
            }
            let act = self.activate(&pre, ff);
            let mut y = mid.clone();
            linear_into(&mut y, &act, wo, d, ff, true)?;
            Ok((y, Saved { attn_rstd, qkv, probs, mid, ffn_rstd, pre }))
        })?;
        self.saved.put(saved);
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let s = self.saved.take(self.name())?;
        let m = self.seqs.rows();
        let inner = self.layer.q.dim(0)?;
        let d = x.dims().last().copied().unwrap_or(0);
        let ff = self.layer.wo.dim(1)?;
        let (x, g) = (x.contiguous()?, g.contiguous()?);
        let dx = with_cpu_slices(self.name(), &[&x, &g], |xg| {
            with_cpu_slices(self.name(), &self.layer.tensors(), |w| {
                let (x, g) = (xg[0], xg[1]);
                if g.len() != m * d || x.len() != m * d {
                    bail!("{}: gradient of {} values for {m} rows of {d}", self.name(), g.len());
                }
                let (attn_norm, wq, wk, wv, wo_attn, ffn_norm, wo, wi) =
                    (w[0], w[1], w[2], w[3], w[4], w[5], w[6], &w[7..]);
                // y = mid + FFN(rms(mid)).
                let mut dmid = fill::copy(g);
                let mut dact = Scratch::take(m * ff);
                linear_backward_into(&mut dact, g, wo, d, ff, false)?;
                let dpre = self.activation_backward(dact, &s.pre, ff);
                let mut dnormed = Scratch::take(m * d);
                for (i, wp) in wi.iter().enumerate() {
                    let rows = Rows { data: &dpre[i * ff..], row_stride: wi.len() * ff };
                    linear_backward_strided(&mut dnormed, rows, wp, (m, ff, d), i > 0)?;
                }
                drop(dpre);
                rms_rows_backward_add(&mut dmid, &mut dnormed, &s.mid, ffn_norm, &s.ffn_rstd);
                // mid = x + attention(rms(x)) Woᵀ.
                let mut dctx = Scratch::take(m * inner);
                linear_backward_into(&mut dctx, &dmid, wo_attn, d, inner, false)?;
                let mut dqkv = Scratch::take(m * 3 * inner);
                attention::backward_seqs(&s.qkv, &s.probs, &dctx, 1.0, inner, &self.seqs, &mut dqkv)?;
                drop(dctx);
                // dx = dmid + rms'(dqkv · W_qkv), on the rows that need it.
                let p = self.grad_positions;
                if self.seqs.leading_is_all(p) {
                    for (i, wp) in [wq, wk, wv].into_iter().enumerate() {
                        let rows = Rows { data: &dqkv[i * inner..], row_stride: 3 * inner };
                        linear_backward_strided(&mut dnormed, rows, wp, (m, inner, d), i > 0)?;
                    }
                    let mut dx = dmid;
                    rms_rows_backward_add(&mut dx, &mut dnormed, x, attn_norm, &s.attn_rstd);
                    return Ok(dx);
                }
                // Gathered so that each product is one gemm over the
                // (sequences × prompt) rows, not one per sequence.
                let g = self.seqs.gather_leading(p, &dqkv, 3 * inner);
                let mut gdx = self.seqs.gather_leading(p, &dmid, d);
                let rstd = self.seqs.gather_leading(p, &s.attn_rstd, 1);
                let rows = rstd.len();
                let mut gdn = vec![0f32; rows * d];
                for (i, wp) in [wq, wk, wv].into_iter().enumerate() {
                    let g = Rows { data: &g[i * inner..], row_stride: 3 * inner };
                    linear_backward_strided(&mut gdn, g, wp, (rows, inner, d), i > 0)?;
                }
                rms_rows_backward_add(&mut gdx, &mut gdn, &self.seqs.gather_leading(p, x, d), attn_norm, &rstd);
                let mut dx = dmid;
                self.seqs.scatter_leading(p, &gdx, d, &mut dx);
                Ok(dx)
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), &candle_core::Device::Cpu)?))
    }
}
