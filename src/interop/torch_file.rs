//! PyTorch checkpoint files (`torch.save`, zip format): reading tensors with
//! the restricted unpickler, and writing one tensor back so that
//! `torch.load(path, weights_only=True)` accepts it.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::pickle::{self, StorageDtype, TensorRef, Value};
use super::SourceTensor;
use crate::package::Dtype;

/// `data.pkl` larger than this is not a prompt checkpoint.
const MAX_PICKLE: u64 = 64 * 1024 * 1024;
/// Nesting depth explored when collecting tensors from dicts and lists.
const MAX_DEPTH: usize = 8;
/// Largest tensor materialised (1 GiB): far beyond any soft prompt.
const MAX_TENSOR_BYTES: usize = 1 << 30;
/// Tensors listed at most; more means this is not a prompt file.
const MAX_TENSORS: usize = 100_000;

/// What a checkpoint holds: one bare tensor, or named tensors from a
/// (possibly nested) dict or list, keyed by dotted path (`state_dict.prompt`).
/// Nothing is materialised until [`Checkpoint::load`] is asked for a tensor.
#[derive(Debug)]
pub enum TorchContents {
    Single(TensorRef),
    Named(Vec<(String, TensorRef)>),
}

/// `[100, 768] F32` (or the torch dtype name for dtypes a prompt cannot have).
pub fn describe(t: &TensorRef) -> String {
    let dtype = match t.storage.dtype {
        StorageDtype::F32 => "F32",
        StorageDtype::F16 => "F16",
        StorageDtype::BF16 => "BF16",
        StorageDtype::Other(name, _) => name,
    };
    format!("{:?} {dtype}", t.shape)
}

/// True when `bytes` start like a zip archive (the `torch.save` format since 1.6).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// True for the legacy (pre-1.6) `torch.save` format: a bare pickle stream.
pub fn is_legacy_pickle(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1])
}

/// An opened zip-format PyTorch checkpoint: its unpickled structure, and
/// the archive to load tensor data from.
pub struct Checkpoint<'a> {
    path: PathBuf,
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    prefix: String,
    pub contents: TorchContents,
}

impl<'a> Checkpoint<'a> {
    /// Reads the archive directory and `data.pkl` (restricted unpickler).
    pub fn open(path: &Path, bytes: &'a [u8]) -> Result<Checkpoint<'a>> {
        if !is_zip(bytes) {
            if is_legacy_pickle(bytes) {
                bail!(
                    "{} uses the legacy (pre-1.6) torch.save format, which attempt-pkg does not read; \
                     re-save it with a current PyTorch: torch.save(torch.load(path, weights_only=True), new_path)",
                    path.display()
                );
            }
            bail!("{} is not a PyTorch checkpoint (expected a zip archive written by torch.save)", path.display());
        }
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
            .with_context(|| format!("{} is not a readable zip archive", path.display()))?;
        let names: Vec<String> = zip
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} has an unreadable file name in its zip directory", path.display()))?;
        let pkl = names
            .iter()
            .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .with_context(|| {
                format!("{} has no `<archive>/data.pkl` record: not a torch.save checkpoint", path.display())
            })?
            .clone();
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        if let Ok(order) = read_record(&mut zip, &format!("{prefix}byteorder"), 16) {
            if order.trim_ascii() != b"little" {
                bail!(
                    "{} was saved on a big-endian machine; only little-endian checkpoints are supported",
                    path.display()
                );
            }
        }
        let pickle_bytes =
            read_record(&mut zip, &pkl, MAX_PICKLE).with_context(|| format!("reading {pkl} in {}", path.display()))?;
        let root = pickle::unpickle(&pickle_bytes).with_context(|| format!("reading {}", path.display()))?;
        let contents = match &root {
            Value::Tensor(t) => TorchContents::Single((**t).clone()),
            Value::Dict(_) | Value::List(_) | Value::Tuple(_) => {
                let mut found = Vec::new();
                collect(&root, String::new(), 0, &mut found)?;
                TorchContents::Named(found)
            }
            other => bail!("{} holds a {other:?}, not a tensor or a dict of tensors", path.display()),
        };
        Ok(Checkpoint { path: path.to_path_buf(), zip, prefix, contents })
    }

    /// Materialises one tensor as contiguous little-endian bytes.
    pub fn load(&mut self, t: &TensorRef) -> Result<SourceTensor> {
        let dtype = match t.storage.dtype {
            StorageDtype::F32 => Dtype::F32,
            StorageDtype::F16 => Dtype::F16,
            StorageDtype::BF16 => Dtype::BF16,
            StorageDtype::Other(name, _) => bail!(
                "{}: the tensor has dtype {name}; a prompt must be float32, float16 or bfloat16 (convert it with .float())",
                self.path.display()
            ),
        };
        let elem = t.storage.dtype.size();
        let storage_len = t.storage.numel.checked_mul(elem).context("storage size overflows")?;
        let name = format!("{}data/{}", self.prefix, t.storage.key);
        let storage = read_record(&mut self.zip, &name, storage_len as u64)
            .with_context(|| format!("reading {}", self.path.display()))?;
        if storage.len() != storage_len {
            bail!(
                "{}: storage `{name}` holds {} bytes; the pickle says {} elements of {elem} bytes",
                self.path.display(),
                storage.len(),
                t.storage.numel
            );
        }
        let data = gather(&storage, elem, t).with_context(|| format!("in {}", self.path.display()))?;
        Ok(SourceTensor { dtype, shape: t.shape.clone(), data })
    }
}

/// Depth-first walk collecting tensors under dotted keys; other values are skipped.
fn collect(v: &Value, key: String, depth: usize, out: &mut Vec<(String, TensorRef)>) -> Result<()> {
    if out.len() > MAX_TENSORS {
        bail!("the checkpoint holds more than {MAX_TENSORS} tensors; not a prompt file");
    }
    let join = |k: &str| if key.is_empty() { k.to_string() } else { format!("{key}.{k}") };
    match v {
        Value::Tensor(t) => out.push((key, (**t).clone())),
        _ if depth >= MAX_DEPTH => {}
        Value::Dict(items) => {
            for (k, item) in items.iter() {
                let name = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                collect(item, join(&name), depth + 1, out)?;
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                collect(item, join(&i.to_string()), depth + 1, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn read_record<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>, name: &str, limit: u64) -> Result<Vec<u8>> {
    let mut file = zip.by_name(name).with_context(|| format!("the checkpoint has no record `{name}`"))?;
    if file.size() > limit {
        bail!("record `{name}` is {} bytes; the limit is {limit}", file.size());
    }
    // The size comes from the archive's directory: trust it only up to the limit.
    let mut out = Vec::with_capacity(file.size().min(limit).min(1 << 20) as usize);
    file.by_ref().take(limit).read_to_end(&mut out).with_context(|| format!("reading record `{name}`"))?;
    Ok(out)
}

/// Copies the elements of a strided view into row-major order, checking
/// every index stays inside the storage.
fn gather(storage: &[u8], elem: usize, t: &TensorRef) -> Result<Vec<u8>> {
    let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).context("tensor size overflows")?;
    // Stride-0 (expanded) views can describe far more elements than their
    // storage holds; bound what is materialised.
    if numel.checked_mul(elem).is_none_or(|n| n > MAX_TENSOR_BYTES) {
        bail!("the tensor {:?} has {numel} elements, more than a prompt can hold", t.shape);
    }
    if numel == 0 {
        return Ok(Vec::new());
    }
    // Largest element index the view touches.
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&d, &s)| acc.checked_add((d - 1).checked_mul(s)?))
        .context("tensor view overflows")?;
    if last.checked_add(1).and_then(|n| n.checked_mul(elem)).is_none_or(|end| end > storage.len()) {
        bail!(
            "tensor view (offset {}, size {:?}, stride {:?}) reaches past its storage of {} elements",
            t.offset,
            t.shape,
            t.stride,
            storage.len() / elem
        );
    }
    let contiguous = {
        let mut expected = 1usize;
        let mut ok = true;
        for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
            if d != 1 && s != expected {
                ok = false;
            }
            expected = expected.saturating_mul(d);
        }
        ok
    };
    if contiguous {
        let start = t.offset * elem;
        return Ok(storage[start..start + numel * elem].to_vec());
    }
    let mut out = Vec::with_capacity(numel * elem);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let pos = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&storage[pos * elem..(pos + 1) * elem]);
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < t.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(out)
}

/// A zip-format checkpoint holding one contiguous tensor, as `torch.save`
/// writes it (protocol-2 pickle naming only `_rebuild_tensor_v2`, a typed
/// storage and `OrderedDict`; records 64-byte aligned). Deterministic bytes.
pub fn write_single(dtype: Dtype, shape: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let storage = match dtype {
        Dtype::F32 => StorageDtype::F32,
        Dtype::F16 => StorageDtype::F16,
        Dtype::BF16 => StorageDtype::BF16,
    };
    let numel = data.len() / dtype.size();
    let pickle = tensor_pickle(storage, shape, numel)?;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).with_alignment(64);
    let records: [(&str, &[u8]); 4] = [
        ("archive/data.pkl", &pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", data),
        ("archive/version", b"3\n"),
    ];
    for (name, bytes) in records {
        zip.start_file(name, options).with_context(|| format!("writing record {name}"))?;
        zip.write_all(bytes).with_context(|| format!("writing record {name}"))?;
    }
    Ok(zip.finish().context("finishing the zip archive")?.into_inner())
}

/// Protocol-2 pickle of `_rebuild_tensor_v2(storage('0'), 0, shape, stride, False, OrderedDict())`.
fn tensor_pickle(storage: StorageDtype, shape: &[usize], numel: usize) -> Result<Vec<u8>> {
    let mut p = vec![0x80, 0x02];
    global(&mut p, "torch._utils", "_rebuild_tensor_v2");
    p.push(b'('); // args tuple
    p.push(b'('); // persistent id tuple
    unicode(&mut p, "storage");
    global(&mut p, "torch", storage.class());
    unicode(&mut p, "0");
    unicode(&mut p, "cpu");
    int(&mut p, numel)?;
    p.push(b't');
    p.push(b'Q'); // BINPERSID
    int(&mut p, 0)?; // storage offset
    let mut stride = vec![0usize; shape.len()];
    let mut acc = 1usize;
    for (s, &d) in stride.iter_mut().zip(shape).rev() {
        *s = acc;
        acc = acc.saturating_mul(d);
    }
    for dims in [shape, &stride[..]] {
        p.push(b'(');
        for &d in dims {
            int(&mut p, d)?;
        }
        p.push(b't');
    }
    p.push(0x89); // requires_grad = False
    global(&mut p, "collections", "OrderedDict");
    p.push(b')');
    p.push(b'R'); // backward hooks = OrderedDict()
    p.push(b't');
    p.push(b'R');
    p.push(b'.');
    Ok(p)
}

fn global(p: &mut Vec<u8>, module: &str, name: &str) {
    p.push(b'c');
    p.extend_from_slice(module.as_bytes());
    p.push(b'\n');
    p.extend_from_slice(name.as_bytes());
    p.push(b'\n');
}

fn unicode(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn int(p: &mut Vec<u8>, v: usize) -> Result<()> {
    let v = i32::try_from(v).context("a tensor dimension does not fit a pickle int")?;
    p.push(b'J');
    p.extend_from_slice(&v.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_checkpoint_reads_back() {
        let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let bytes = write_single(Dtype::F32, &[2, 3], &data).unwrap();
        assert_eq!(bytes, write_single(Dtype::F32, &[2, 3], &data).unwrap(), "deterministic");
        let mut ckpt = Checkpoint::open(Path::new("x.pt"), &bytes).unwrap();
        let TorchContents::Single(t) = &ckpt.contents else { panic!("not single") };
        let t = ckpt.load(&t.clone()).unwrap();
        assert_eq!((t.dtype, t.shape.as_slice(), t.data.as_slice()), (Dtype::F32, &[2usize, 3][..], &data[..]));
    }

    #[test]
    fn gathers_a_transposed_view() {
        // storage 0..6 as [2,3]; view its transpose [3,2] with stride (1,3).
        let storage: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let t = TensorRef {
            storage: pickle::StorageRef { dtype: StorageDtype::F32, key: "0".into(), numel: 6 },
            offset: 0,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        let out = gather(&storage, 4, &t).unwrap();
        let vals: Vec<f32> = out.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(vals, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let past = TensorRef { offset: 1, ..t };
        assert!(gather(&storage, 4, &past).is_err());
    }
}
