//! Foreign safetensors files: reading a named tensor (import) and writing
//! one tensor (export, authoring directories). Foreign files may hold many
//! tensors and any metadata, so this uses the reference `safetensors` crate
//! rather than the package format's strict reader.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::{Dtype as StDtype, SafeTensors};

use super::SourceTensor;
use crate::package::Dtype;

/// Every tensor in a safetensors file, by name. Tensors of dtypes a prompt
/// cannot have are listed with their dtype so the error can name them.
pub fn read_all(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Result<SourceTensor, String>>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            StDtype::F32 => Ok(Dtype::F32),
            StDtype::F16 => Ok(Dtype::F16),
            StDtype::BF16 => Ok(Dtype::BF16),
            other => Err(format!("{other:?}")),
        };
        let entry = dtype.map(|dtype| SourceTensor { dtype, shape: view.shape().to_vec(), data: view.data().to_vec() });
        out.insert(name, entry);
    }
    Ok(out)
}

/// Reads one tensor: `key` if given, else the only tensor in the file.
pub fn read_one(path: &Path, bytes: &[u8], key: Option<&str>) -> Result<(String, SourceTensor)> {
    let mut all = read_all(path, bytes)?;
    let name = match key {
        Some(k) => {
            if !all.contains_key(k) {
                bail!("{} has no tensor `{k}`; it holds: {}", path.display(), list_keys(&all));
            }
            k.to_string()
        }
        None => match all.len() {
            0 => bail!("{} holds no tensors", path.display()),
            1 => all.keys().next().cloned().unwrap_or_default(),
            _ => bail!(
                "{} holds several tensors; choose one with --tensor KEY: {}",
                path.display(),
                list_keys(&all)
            ),
        },
    };
    match all.remove(&name) {
        Some(Ok(t)) => Ok((name, t)),
        Some(Err(dtype)) => bail!(
            "tensor `{name}` in {} has dtype {dtype}; a prompt must be F32, F16 or BF16",
            path.display()
        ),
        None => bail!("{} has no tensor `{name}`", path.display()),
    }
}

fn list_keys(all: &BTreeMap<String, Result<SourceTensor, String>>) -> String {
    all.iter()
        .map(|(k, t)| match t {
            Ok(t) => format!("`{k}` {}", t.describe()),
            Err(dtype) => format!("`{k}` {dtype}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A safetensors file with one tensor; metadata has at most one key, so the
/// bytes are deterministic.
pub fn write_one(name: &str, dtype: Dtype, shape: &[usize], data: &[u8], metadata: Option<(&str, &str)>) -> Result<Vec<u8>> {
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
