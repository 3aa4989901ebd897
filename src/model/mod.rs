use candle_core::Tensor;
/// A frozen encoder that takes input embeddings, so soft prompts can be prepended.
pub trait Encoder {
    /// token ids [b, L] (u32) -> input embeddings [b, L, d]
    fn embed_tokens(&self, ids: &Tensor) -> candle_core::Result<Tensor>;
    /// input embeddings [b, L, d] + attention mask [b, L] (1 attend / 0 pad) -> last hidden states [b, L, d]
    fn encode(&self, input_embeds: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor>;
    fn hidden_size(&self) -> usize;
}
