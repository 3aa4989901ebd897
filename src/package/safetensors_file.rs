//! A strict reader and a deterministic writer for the safetensors container.
//!
//! The `safetensors` crate serialises metadata from a `HashMap` (random key
//! order) and reports malformed files with terse errors, so the package format
//! owns both directions: the writer sorts everything, the reader checks every
//! structural rule and says which one failed.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Largest header accepted; real headers are a few kilobytes.
pub const MAX_HEADER_LEN: u64 = 16 * 1024 * 1024;

/// Element types a prompt tensor may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn parse(s: &str) -> Option<Dtype> {
        match s {
            "F32" => Some(Dtype::F32),
            "F16" => Some(Dtype::F16),
            "BF16" => Some(Dtype::BF16),
            _ => None,
        }
    }

    /// The safetensors spelling (`F32`, `F16`, `BF16`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

/// One tensor entry of a parsed file; `data` is its byte range in the file.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub name: String,
    /// The dtype as written (validated against [`Dtype`] by the caller, so a
    /// foreign dtype gets a package-level message).
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: std::ops::Range<usize>,
}

/// A structurally valid safetensors file.
#[derive(Debug, Clone, Default)]
pub struct RawFile {
    pub metadata: BTreeMap<String, String>,
    pub tensors: Vec<RawTensor>,
}

/// Parses and checks the container: header length within the file, header
/// valid UTF-8 JSON, metadata string → string, known dtypes' sizes matching
/// the shapes, offsets in bounds and contiguous, covering the whole data area.
pub fn parse(bytes: &[u8]) -> Result<RawFile> {
    if bytes.len() < 8 {
        bail!("file is {} bytes long, too short for a safetensors header (truncated?)", bytes.len());
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len_bytes);
    let available = (bytes.len() - 8) as u64;
    if header_len > available {
        bail!("header length {header_len} runs past the end of the file ({available} bytes after the length field; truncated?)");
    }
    if header_len > MAX_HEADER_LEN {
        bail!("header length {header_len} exceeds the {MAX_HEADER_LEN}-byte limit");
    }
    let header_end = 8 + header_len as usize;
    let header = std::str::from_utf8(&bytes[8..header_end]).context("header is not valid UTF-8")?;
    let json: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(header.trim_end_matches(' ')).context("header is not a JSON object")?;
    let data_len = bytes.len() - header_end;

    let mut file = RawFile::default();
    for (key, value) in json {
        if key == "__metadata__" {
            let map = value.as_object().context("`__metadata__` is not a JSON object")?;
            for (k, v) in map {
                let s = v.as_str().with_context(|| format!("metadata value `{k}` is not a string"))?;
                file.metadata.insert(k.clone(), s.to_string());
            }
            continue;
        }
        let tensor = parse_tensor_entry(&key, &value)?;
        let dtype_size = match Dtype::parse(&tensor.0) {
            Some(d) => Some(d.size()),
            None => known_foreign_size(&tensor.0),
        };
        let (dtype, shape, start, end) = tensor;
        if end < start {
            bail!("tensor `{key}`: data offsets [{start}, {end}] are reversed");
        }
        if end > data_len {
            bail!(
                "tensor `{key}`: data offsets [{start}, {end}] are out of bounds (the data area is {data_len} bytes)"
            );
        }
        if let Some(size) = dtype_size {
            let expected = shape
                .iter()
                .try_fold(size, |acc, &d| acc.checked_mul(d))
                .with_context(|| format!("tensor `{key}`: shape {shape:?} overflows"))?;
            if expected != end - start {
                bail!(
                    "tensor `{key}`: shape {shape:?} of {dtype} needs {expected} bytes, but its offsets span {}",
                    end - start
                );
            }
        }
        file.tensors.push(RawTensor { name: key, dtype, shape, data: header_end + start..header_end + end });
    }

    // Tensors must tile the data area exactly: no gaps, no overlaps, no tail.
    let mut ranges: Vec<(usize, usize, &str)> =
        file.tensors.iter().map(|t| (t.data.start - header_end, t.data.end - header_end, t.name.as_str())).collect();
    ranges.sort();
    let mut pos = 0usize;
    for (start, end, name) in ranges {
        if start != pos {
            bail!("tensor `{name}` starts at data offset {start}, expected {pos} (offsets must be contiguous)");
        }
        pos = end;
    }
    if pos != data_len {
        bail!("the data area is {data_len} bytes but the tensors cover {pos} (trailing or missing bytes)");
    }
    Ok(file)
}

/// Sizes of the other safetensors dtypes, so foreign files still get their
/// offsets checked before being refused.
fn known_foreign_size(dtype: &str) -> Option<usize> {
    match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => Some(1),
        "U16" | "I16" => Some(2),
        "U32" | "I32" => Some(4),
        "U64" | "I64" | "F64" => Some(8),
        _ => None,
    }
}

fn parse_tensor_entry(key: &str, value: &serde_json::Value) -> Result<(String, Vec<usize>, usize, usize)> {
    let obj = value.as_object().with_context(|| format!("tensor `{key}`: entry is not a JSON object"))?;
    let dtype =
        obj.get("dtype").and_then(|v| v.as_str()).with_context(|| format!("tensor `{key}`: missing string `dtype`"))?;
    let shape = obj
        .get("shape")
        .and_then(|v| v.as_array())
        .with_context(|| format!("tensor `{key}`: missing array `shape`"))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .with_context(|| format!("tensor `{key}`: shape must be non-negative integers"))?;
    let offsets = obj
        .get("data_offsets")
        .and_then(|v| v.as_array())
        .with_context(|| format!("tensor `{key}`: missing array `data_offsets`"))?;
    let bound = |i: usize| {
        offsets
            .get(i)
            .and_then(|v| v.as_u64())
            .and_then(|v| usize::try_from(v).ok())
            .with_context(|| format!("tensor `{key}`: data_offsets must be two non-negative integers"))
    };
    if offsets.len() != 2 {
        bail!("tensor `{key}`: data_offsets must have exactly two entries");
    }
    Ok((dtype.to_string(), shape, bound(0)?, bound(1)?))
}

#[derive(Serialize)]
#[serde(untagged)]
enum HeaderItem<'a> {
    Metadata(&'a BTreeMap<String, String>),
    Tensor { dtype: &'static str, shape: &'a [usize], data_offsets: [usize; 2] },
}

/// A tensor to write: name, dtype, shape and little-endian bytes.
pub struct TensorToWrite<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

/// Writes a safetensors file whose bytes depend only on the inputs: keys are
/// sorted (`BTreeMap`), tensors laid out in name order, the header padded
/// with spaces to a multiple of 8 bytes as the reference writer does.
pub fn write(metadata: &BTreeMap<String, String>, tensors: &[TensorToWrite<'_>]) -> Vec<u8> {
    let mut ordered: Vec<&TensorToWrite<'_>> = tensors.iter().collect();
    ordered.sort_by(|a, b| a.name.cmp(b.name));
    let mut header: BTreeMap<&str, HeaderItem<'_>> = BTreeMap::new();
    if !metadata.is_empty() {
        header.insert("__metadata__", HeaderItem::Metadata(metadata));
    }
    let mut offset = 0usize;
    for t in &ordered {
        let end = offset + t.data.len();
        header.insert(
            t.name,
            HeaderItem::Tensor { dtype: t.dtype.as_str(), shape: t.shape, data_offsets: [offset, end] },
        );
        offset = end;
    }
    // Maps of strings and integers always serialise.
    let mut json = serde_json::to_string(&header).unwrap_or_default().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for t in &ordered {
        out.extend_from_slice(t.data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_compatible_with_reference_reader() {
        let mut meta = BTreeMap::new();
        meta.insert("b".to_string(), "2".to_string());
        meta.insert("a".to_string(), "1".to_string());
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let shape = [2usize, 3];
        let bytes = write(&meta, &[TensorToWrite { name: "prompt", dtype: Dtype::F32, shape: &shape, data: &data }]);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.metadata, meta);
        assert_eq!(parsed.tensors[0].shape, vec![2, 3]);
        assert_eq!(&bytes[parsed.tensors[0].data.clone()], &data[..]);
        let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(reference.tensor("prompt").unwrap().shape(), &[2, 3]);
    }

    #[test]
    fn rejects_structural_damage() {
        let data = [0u8; 8];
        let bytes = write(
            &BTreeMap::new(),
            &[TensorToWrite { name: "prompt", dtype: Dtype::F32, shape: &[1, 2], data: &data }],
        );
        assert!(parse(&bytes[..bytes.len() - 1]).is_err(), "truncated data");
        assert!(parse(&bytes[..4]).is_err(), "truncated length");
        let mut long = bytes.clone();
        long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&long).is_err(), "header past EOF");
    }
}
