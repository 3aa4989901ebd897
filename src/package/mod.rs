//! The prompt package format: the `Prompt.toml` manifest of an authoring
//! directory and the self-describing `.safetensors` artifact built from it.
//! See `docs/format.md` for the specification.
//!
//! Typical use:
//! - publish: [`Artifact::build`] (dir) → bytes + checksum + manifest;
//! - consume: [`LoadedPackage::read_verified`] (path, checksum) →
//!   [`LoadedPackage::prompt_tensor`] for a candle tensor.

mod artifact;
mod manifest;
mod safetensors_file;

pub use artifact::{
    Artifact, LoadedPackage, PromptTensor, MAX_PROMPT_LENGTH, META_FORMAT, META_MANIFEST, PROMPT_TENSOR,
};
pub use manifest::{
    BaseModel, Manifest, PackageId, PackageMeta, PromptSection, MANIFEST_FILE, MANIFEST_FORMAT, MAX_HIDDEN_SIZE,
    SIGNATURE_FORMAT,
};
pub use safetensors_file::Dtype;
