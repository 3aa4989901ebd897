//! Foreign safetensors files: reading a named tensor (import) and writing
//! one tensor (export, authoring directories). Foreign files may hold many
//! tensors and any metadata, so this uses the reference `safetensors` crate
//! rather than the package format's strict reader.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::{Dtype as StDtype, SafeTensors};

use super::SourceTensor;
use crate::package::Dtype;

/// Reads one tensor: `key` if given, else the only tensor in the file.
/// Only the chosen tensor's bytes are copied.
pub fn read_one(path: &Path, bytes: &[u8], key: Option<&str>) -> Result<(String, SourceTensor)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    let listing = || {
        names
            .iter()
            .filter_map(|n| st.tensor(n).ok().map(|v| format!("`{n}` {:?} {:?}", v.shape(), v.dtype())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = match (key, names.as_slice()) {
        (Some(k), _) if names.iter().any(|n| n == k) => k.to_string(),
        (Some(k), _) => bail!("{} has no tensor `{k}`; it holds: {}", path.display(), listing()),
        (None, [only]) => only.clone(),
        (None, []) => bail!("{} holds no tensors", path.display()),
        (None, _) => bail!("{} holds several tensors; choose one with --tensor KEY: {}", path.display(), listing()),
    };
    let view = st.tensor(&name).map_err(|e| anyhow::anyhow!("{e:?}")).with_context(|| format!("tensor `{name}`"))?;
    let dtype = match view.dtype() {
        StDtype::F32 => Dtype::F32,
        StDtype::F16 => Dtype::F16,
        StDtype::BF16 => Dtype::BF16,
        other => bail!("tensor `{name}` in {} has dtype {other:?}; a prompt must be F32, F16 or BF16", path.display()),
    };
    Ok((name, SourceTensor { dtype, shape: view.shape().to_vec(), data: view.data().to_vec() }))
}

/// A safetensors file with one tensor; metadata has at most one key, so the
/// bytes are deterministic.
pub fn write_one(
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    data: &[u8],
    metadata: Option<(&str, &str)>,
) -> Result<Vec<u8>> {
    let st_dtype = match dtype {
        Dtype::F32 => StDtype::F32,
        Dtype::F16 => StDtype::F16,
        Dtype::BF16 => StDtype::BF16,
    };
    let view = safetensors::tensor::TensorView::new(st_dtype, shape.to_vec(), data)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("tensor `{name}` of shape {shape:?}"))?;
    let meta: Option<HashMap<String, String>> = metadata.map(|(k, v)| HashMap::from([(k.to_string(), v.to_string())]));
    safetensors::serialize([(name, view)], &meta).map_err(|e| anyhow::anyhow!("serialising `{name}`: {e:?}"))
}
