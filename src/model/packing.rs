//! Right-padded batches as packed rows, for the fused layers'
//! `forward_packed`: the row-wise work of a layer (its products, norms and
//! activations) then runs on real positions only.

use candle_core::{DType, Tensor};

/// A right-padded batch as packed rows: every sequence's real positions one
/// after the other, no padding, for the fused layers' `forward_packed`.
pub(crate) struct Packing {
    /// Real positions of each sequence.
    pub(crate) lengths: Vec<usize>,
    /// For each packed row, its row in the padded [b·L] layout.
    gather: Tensor,
    /// For each padded row, its packed row, or the zero row after them.
    scatter: Tensor,
}

impl Packing {
    /// `None` when packing does not pay or does not apply: no padding, not
    /// the fused CPU f32 path, or a mask that is not ones then zeros in
    /// every row (left padding, holes), which the padded path handles.
    pub(crate) fn of(x: &Tensor, mask: &Tensor) -> candle_core::Result<Option<Packing>> {
        if !super::ops::use_fused(x) {
            return Ok(None);
        }
        let (b, l) = mask.dims2()?;
        let flags = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut lengths = Vec::with_capacity(b);
        for row in &flags {
            let len = row.iter().take_while(|&&m| m != 0.0).count();
            if row[len..].iter().any(|&m| m != 0.0) {
                return Ok(None);
            }
            lengths.push(len);
        }
        let rows: usize = lengths.iter().sum();
        if rows == b * l {
            return Ok(None);
        }
        let mut gather = Vec::with_capacity(rows);
        let mut scatter = vec![rows as u32; b * l];
        for (seq, &len) in lengths.iter().enumerate() {
            for pos in 0..len {
                scatter[seq * l + pos] = gather.len() as u32;
                gather.push((seq * l + pos) as u32);
            }
        }
        let gather = Tensor::from_vec(gather, rows, x.device())?;
        let scatter = Tensor::from_vec(scatter, b * l, x.device())?;
        Ok(Some(Packing { lengths, gather, scatter }))
    }

    /// `layers` over the packed rows of x [b, L, d]; the result back in the
    /// padded layout, zero at padded positions.
    pub(crate) fn run(
        &self,
        x: &Tensor,
        layers: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let rows = layers(&x.reshape((b * l, d))?.index_select(&self.gather, 0)?)?;
        let zero = Tensor::zeros((1, d), rows.dtype(), rows.device())?;
        Tensor::cat(&[&rows, &zero], 0)?.index_select(&self.scatter, 0)?.reshape((b, l, d))
    }
}
