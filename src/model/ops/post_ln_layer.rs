//! A whole post-LN encoder layer (BERT's) as one op with a hand-written
//! backward to its input.
//!
//! Built from the single ops a layer is eight graph nodes, and candle's
//! backward gives each node's input a zeroed gradient buffer plus an add,
//! besides the temporaries of every op. As one node the layer's backward runs
//! straight through: residual gradients are accumulated by the gemms
//! themselves (β = 1), GELU's and layer norm's backward work in place, and
//! forward keeps only what backward reads (q|k|v, the attention
//! probabilities, the FFN pre-activation, the two normalised sums and their
//! 1/std) — and nothing at all when no gradient is wanted.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::activation::{gelu_backward_in_place, gelu_into};
use super::attention::{self, attended_keys, Seqs};
use super::cpu::{f32_slice, with_cpu_slices, SavedForward};
use super::fill::{self, add_row, repeat_row};
use super::layer_norm::{normalize_rows, normalize_rows_backward};
use super::linear::{linear_backward_into, linear_into};
use super::scratch::Scratch;

/// The frozen weights of one layer; linear weights are [out, in].
#[derive(Clone)]
pub struct PostLnLayer {
    /// Query, key and value projections stacked: [3d, d] and [3d].
    pub qkv_w: Tensor,
    pub qkv_b: Tensor,
    pub attn_out_w: Tensor,
    pub attn_out_b: Tensor,
    pub attn_ln_w: Tensor,
    pub attn_ln_b: Tensor,
    /// [i, d] and [i].
    pub intermediate_w: Tensor,
    pub intermediate_b: Tensor,
    /// [d, i] and [d].
    pub output_w: Tensor,
    pub output_b: Tensor,
    pub output_ln_w: Tensor,
    pub output_ln_b: Tensor,
    pub heads: usize,
    pub eps: f64,
}

impl PostLnLayer {
    /// x [b, L, d] with `mask` [b, L] (1 = attend) → [b, L, d]:
    /// y = LN(x + attention(x)); LN(y + FFN(y)), FFN = GELU(y Wᵢ + bᵢ) Wₒ + bₒ.
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let l = x.dims3()?.1;
        self.forward_prompted(x, mask, l)
    }

    /// [`forward`](Self::forward) for an input whose first `prompt_len`
    /// positions are a soft prompt and whose other positions are frozen text:
    /// the same output, but backward computes the input gradient of the
    /// prompt positions only and leaves the text positions' gradient zero.
    /// Nothing trainable lies upstream of frozen text, so nobody reads it,
    /// and the first layer skips the [3d, d] product for every text row.
    pub fn forward_prompted(&self, x: &Tensor, mask: &Tensor, prompt_len: usize) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        if mask.dims() != [b, l] {
            bail!("attention mask has shape {:?}, expected [{b}, {l}]", mask.dims());
        }
        if self.qkv_w.dims() != [3 * d, d] {
            bail!("layer of width {} got input of width {d}", self.qkv_w.dim(1)?);
        }
        if prompt_len > l {
            bail!("a prompt of {prompt_len} positions does not fit an input of {l}");
        }
        if !super::use_fused(x) || self.weights().iter().any(|w| !super::use_fused(w)) {
            // The single ops give every position its gradient, which is
            // right, only not as cheap.
            return self.forward_unfused(x, mask);
        }
        let op = FusedLayer {
            layer: self.clone(),
            seqs: Seqs::uniform(b, l, self.heads),
            keep: Some(attended_keys(mask)?),
            grad_positions: prompt_len,
            saved: SavedForward::new(x.track_op()),
        };
        x.contiguous()?.apply_op1(op)
    }

    /// The layer over a packed batch: x [rows, d] holds sequences of the
    /// given `lengths` one after the other, with no padding, every position
    /// attended; backward gives input gradient to each sequence's first
    /// `prompt_len` positions only, as [`forward_prompted`](Self::forward_prompted)
    /// (a `prompt_len` as long as the longest sequence: to all). The row-wise
    /// products (¾ of a step) then run on real tokens only, where a padded
    /// batch spends them on padding too.
    pub fn forward_packed(&self, x: &Tensor, lengths: &[usize], prompt_len: usize) -> Result<Tensor> {
        let (rows, d) = x.dims2()?;
        let seqs = Seqs::packed_rows(lengths, self.heads, rows)?;
        if self.qkv_w.dims() != [3 * d, d] {
            bail!("layer of width {} got input of width {d}", self.qkv_w.dim(1)?);
        }
        if !super::use_fused(x) || self.weights().iter().any(|w| !super::use_fused(w)) {
            bail!("packed sequences need the fused CPU layer (f32 on the CPU); pad the batch and use forward");
        }
        let op = FusedLayer {
            layer: self.clone(),
            seqs,
            keep: None,
            grad_positions: prompt_len,
            saved: SavedForward::new(x.track_op()),
        };
        x.contiguous()?.apply_op1(op)
    }

    /// The same layer from the single ops (any device, any dtype).
    pub fn forward_unfused(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let ctx = super::attention(&super::linear(x, &self.qkv_w, Some(&self.qkv_b))?, mask, self.heads)?;
        let attn = super::linear(&ctx, &self.attn_out_w, Some(&self.attn_out_b))?;
        let x = super::add_layer_norm(&attn, x, &self.attn_ln_w, &self.attn_ln_b, self.eps)?;
        let h = super::gelu_erf(&super::linear(&x, &self.intermediate_w, Some(&self.intermediate_b))?)?;
        let out = super::linear(&h, &self.output_w, Some(&self.output_b))?;
        super::add_layer_norm(&out, &x, &self.output_ln_w, &self.output_ln_b, self.eps)
    }

    fn weights(&self) -> [&Tensor; 12] {
        [
            &self.qkv_w,
            &self.qkv_b,
            &self.attn_out_w,
            &self.attn_out_b,
            &self.attn_ln_w,
            &self.attn_ln_b,
            &self.intermediate_w,
            &self.intermediate_b,
            &self.output_w,
            &self.output_b,
            &self.output_ln_w,
            &self.output_ln_b,
        ]
    }

    fn intermediate_size(&self) -> Result<usize> {
        self.intermediate_w.dim(0)
    }
}

/// The layer's weights as slices, in [`PostLnLayer::weights`] order.
struct WeightSlices<'a> {
    qkv_w: &'a [f32],
    qkv_b: &'a [f32],
    attn_out_w: &'a [f32],
    attn_out_b: &'a [f32],
    attn_ln_w: &'a [f32],
    attn_ln_b: &'a [f32],
    intermediate_w: &'a [f32],
    intermediate_b: &'a [f32],
    output_w: &'a [f32],
    output_b: &'a [f32],
    output_ln_w: &'a [f32],
    output_ln_b: &'a [f32],
}

/// Runs `f` on the CPU data of the layer's weights (read-locked meanwhile).
fn with_weights<R>(layer: &PostLnLayer, f: impl FnOnce(&WeightSlices) -> Result<R>) -> Result<R> {
    with_cpu_slices("post-LN layer", &layer.weights(), |s| {
        let &[qkv_w, qkv_b, attn_out_w, attn_out_b, attn_ln_w, attn_ln_b, intermediate_w, intermediate_b, output_w, output_b, output_ln_w, output_ln_b] =
            s
        else {
            bail!("post-LN layer: expected 12 weights")
        };
        f(&WeightSlices {
            qkv_w,
            qkv_b,
            attn_out_w,
            attn_out_b,
            attn_ln_w,
            attn_ln_b,
            intermediate_w,
            intermediate_b,
            output_w,
            output_b,
            output_ln_w,
            output_ln_b,
        })
    })
}

/// What backward reads, from one forward pass.
struct Saved {
    qkv: Vec<f32>,
    probs: Scratch,
    /// The FFN's pre-activation [m, i].
    intermediate: Vec<f32>,
    /// Normalised residual sums [m, d] and their 1/std [m].
    attn_xhat: Vec<f32>,
    attn_rstd: Vec<f32>,
    output_xhat: Vec<f32>,
    output_rstd: Vec<f32>,
}

struct FusedLayer {
    layer: PostLnLayer,
    /// Where the sequences lie in the input's rows.
    seqs: Seqs,
    /// Per row: whether its key is attended (`None`: all are).
    keep: Option<Vec<bool>>,
    /// Backward computes the input gradient of positions 0..grad_positions
    /// of each sequence (all of them unless a prompt precedes frozen text).
    grad_positions: usize,
    saved: SavedForward<Saved>,
}

impl CustomOp1 for FusedLayer {
    fn name(&self) -> &'static str {
        "attempt-post-ln-layer"
    }

    fn cpu_fwd(&self, s: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, layout)?;
        let d = layout.shape().dims().last().copied().unwrap_or(0);
        let (m, i) = (self.seqs.rows(), self.layer.intermediate_size()?);
        if x.len() != m * d {
            bail!("{}: {} values for {m} rows of {d}", self.name(), x.len());
        }
        let scale = attention::default_scale(d, self.layer.heads);
        let eps = self.layer.eps as f32;
        let (y, saved) = with_weights(&self.layer, |w| {
            let mut qkv = repeat_row(w.qkv_b, m);
            linear_into(&mut qkv, x, w.qkv_w, 3 * d, d, true)?;
            // Scratch: attention writes every element of both.
            let mut ctx = Scratch::take(m * d);
            let mut probs = Scratch::take(self.seqs.probs_len());
            let keep = self.keep.as_deref();
            attention::forward_seqs(&qkv, keep, None, scale, d, &self.seqs, &mut ctx, &mut probs);
            // Residual and bias go in first; the gemm adds the projection.
            let mut attn_xhat = add_row(x, w.attn_out_b);
            linear_into(&mut attn_xhat, &ctx, w.attn_out_w, d, d, true)?;
            drop(ctx);
            let mut attn_rstd = vec![0f32; m];
            let mut hidden = fill::zeros(m * d);
            normalize_rows(&mut attn_xhat, &mut attn_rstd, &mut hidden, w.attn_ln_w, w.attn_ln_b, eps);

            let mut intermediate = repeat_row(w.intermediate_b, m);
            linear_into(&mut intermediate, &hidden, w.intermediate_w, i, d, true)?;
            let mut activated = Scratch::take(m * i);
            gelu_into(&mut activated, &intermediate);
            let mut output_xhat = add_row(&hidden, w.output_b);
            linear_into(&mut output_xhat, &activated, w.output_w, d, i, true)?;
            drop(activated);
            let mut output_rstd = vec![0f32; m];
            // The layer's output reuses `hidden`, which is no longer needed.
            normalize_rows(&mut output_xhat, &mut output_rstd, &mut hidden, w.output_ln_w, w.output_ln_b, eps);
            let saved = Saved { qkv, probs, intermediate, attn_xhat, attn_rstd, output_xhat, output_rstd };
            Ok((hidden, saved))
        })?;
        self.saved.put(saved);
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let s = self.saved.take(self.name())?;
        let d = x.dims().last().copied().unwrap_or(0);
        let (m, i) = (self.seqs.rows(), self.layer.intermediate_size()?);
        let scale = attention::default_scale(d, self.layer.heads);
        let g = g.contiguous()?;
        let dx = with_cpu_slices(self.name(), &[&g], |gs| {
            with_weights(&self.layer, |w| {
                let g = gs[0];
                if g.len() != m * d {
                    bail!("{}: gradient of {} values for {m} rows of {d}", self.name(), g.len());
                }
                // Second block: y = LN(h + FFN(h)).
                let mut dsum = fill::copy(g);
                normalize_rows_backward(&mut dsum, &s.output_xhat, &s.output_rstd, w.output_ln_w);
                // Scratch: the products below overwrite them (β = 0).
                let mut dact = Scratch::take(m * i);
                linear_backward_into(&mut dact, &dsum, w.output_w, d, i, false)?;
                gelu_backward_in_place(&mut dact, &s.intermediate);
                // dh = dsum (residual) + dact · Wᵢ, accumulated in place.
                linear_backward_into(&mut dsum, &dact, w.intermediate_w, i, d, true)?;
                drop(dact);
                // First block: h = LN(x + attention(x)).
                normalize_rows_backward(&mut dsum, &s.attn_xhat, &s.attn_rstd, w.attn_ln_w);
                let mut dctx = Scratch::take(m * d);
                linear_backward_into(&mut dctx, &dsum, w.attn_out_w, d, d, false)?;
                let mut dqkv = Scratch::take(m * 3 * d);
                attention::backward_seqs(&s.qkv, &s.probs, &dctx, scale, d, &self.seqs, &mut dqkv)?;
                drop(dctx);
                // dx = dsum (residual) + dqkv · W_qkv.
                if !self.seqs.leading_is_all(self.grad_positions) {
                    leading_positions_backward(&mut dsum, &dqkv, w.qkv_w, d, &self.seqs, self.grad_positions)?;
                } else {
                    linear_backward_into(&mut dsum, &dqkv, w.qkv_w, 3 * d, d, true)?;
                }
                Ok(dsum)
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// dx = dsum + dqkv · W_qkv on positions 0..p of each sequence, and zero on
/// the others, in place of `dsum`. The rows are gathered so that the product
/// is one gemm over (sequences × p) rows rather than one per sequence.
fn leading_positions_backward(
    dsum: &mut [f32],
    dqkv: &[f32],
    qkv_w: &[f32],
    d: usize,
    seqs: &Seqs,
    p: usize,
) -> Result<()> {
    let g = seqs.gather_leading(p, dqkv, 3 * d);
    let mut dx = seqs.gather_leading(p, dsum, d);
    if !dx.is_empty() {
        linear_backward_into(&mut dx, &g, qkv_w, 3 * d, d, true)?;
    }
    seqs.scatter_leading(p, &dx, d, dsum);
    Ok(())
}
