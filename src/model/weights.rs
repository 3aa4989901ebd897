//! Loading safetensors checkpoints (single file or sharded with
//! `model.safetensors.index.json`) into plain, frozen tensors.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The weight files of a model directory, in a stable order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(SINGLE_FILE);
    let index = dir.join(INDEX_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    if index.is_file() {
        let mut files: Vec<PathBuf> = shard_map(&index)?.into_values().collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    bail!(
        "{}: no weights found (expected {SINGLE_FILE} or {INDEX_FILE}); \
         only safetensors checkpoints are supported",
        dir.display()
    )
}

/// tensor name → shard file, from a sharded checkpoint's index.
fn shard_map(index: &Path) -> Result<BTreeMap<String, PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).with_context(|| format!("cannot read {}", index.display()))?;
    let parsed: Index = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid safetensors index (needs a \"weight_map\")", index.display()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut map = BTreeMap::new();
    for (name, file) in parsed.weight_map {
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            bail!("{}: shard file name {file:?} must be a plain file name in the same directory", index.display());
        }
        map.insert(name, dir.join(file));
    }
    Ok(map)
}

/// A read-only view of one safetensors file (memory-mapped).
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: memmap2::Mmap,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open weight file {}", path.display()))?;
        // SAFETY: the map is read-only; a concurrent writer truncating the file
        // is the usual mmap caveat, accepted here as for every mmap-based loader.
        let mmap = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("cannot map weight file {}", path.display()))?;
        let this = SafetensorsFile { path: path.to_path_buf(), mmap };
        this.parse()?;
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header and tensor views.
    pub fn parse(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.mmap).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a valid safetensors file ({e:?}); it may be truncated or corrupt — re-download or re-import it",
                self.path.display()
            )
        })
    }
}

pub fn candle_dtype(dtype: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match dtype {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::F64 => DType::F64,
        S::I64 => DType::I64,
        S::U32 => DType::U32,
        S::U8 => DType::U8,
        _ => return None,
    })
}

/// Frozen weights: plain tensors (never `Var`s) by name, remembering which
/// file each came from so errors can name it. Derefs to the map.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    origin: HashMap<String, PathBuf>,
}

impl Deref for Weights {
    type Target = HashMap<String, Tensor>;
    fn deref(&self) -> &Self::Target {
        &self.tensors
    }
}

impl From<HashMap<String, Tensor>> for Weights {
    fn from(tensors: HashMap<String, Tensor>) -> Self {
        Weights { tensors, origin: HashMap::new() }
    }
}

impl Weights {
    /// Load every tensor of a model directory; floating-point tensors are
    /// converted to f32.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let index = dir.join(INDEX_FILE);
        let expected =
            if !dir.join(SINGLE_FILE).is_file() && index.is_file() { Some(shard_map(&index)?) } else { None };
        let mut weights = Weights::default();
        for path in weight_files(dir)? {
            let file = SafetensorsFile::open(&path)?;
            let st = file.parse()?;
            for (name, view) in st.tensors() {
                let dtype = candle_dtype(view.dtype()).with_context(|| {
                    format!("{}: tensor {name} has unsupported dtype {:?}", path.display(), view.dtype())
                })?;
                let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), device)
                    .with_context(|| format!("{}: cannot read tensor {name}", path.display()))?;
                let t = frozen(t, device)?;
                weights.origin.insert(name.clone(), path.clone());
                weights.tensors.insert(name, t);
            }
        }
        if let Some(expected) = expected {
            for (name, file) in expected {
                if !weights.tensors.contains_key(&name) {
                    bail!("{}: tensor {name} listed in {INDEX_FILE} is not in that file", file.display());
                }
            }
        }
        Ok(weights)
    }

    /// Where a tensor came from, for error messages.
    pub fn origin(&self, name: &str) -> String {
        match self.origin.get(name) {
            Some(p) => p.display().to_string(),
            None => "the weights".to_string(),
        }
    }

    /// The same tensors as frozen f32 tensors on `device` (integer ones keep
    /// their dtype), for tensors that did not come from [`Weights::load`].
    pub fn on_device(tensors: &HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        let mut weights = Weights::default();
        for (name, t) in tensors {
            let t = frozen(t.clone(), device).with_context(|| format!("cannot load tensor {name}"))?;
            weights.tensors.insert(name.clone(), t);
        }
        Ok(weights)
    }

    fn missing(&self, what: &str) -> anyhow::Error {
        let mut files: Vec<String> = self.origin.values().map(|p| p.display().to_string()).collect();
        files.sort();
        files.dedup();
        let from = if files.is_empty() { "the weights".into() } else { files.join(", ") };
        anyhow::anyhow!("{what} is missing from {from}")
    }

    /// A tensor that must exist with exactly this shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| self.missing(&format!("tensor {name}")))?;
        if t.dims() != shape {
            bail!("{}: tensor {name} has shape {:?} but config.json implies {:?}", self.origin(name), t.dims(), shape);
        }
        Ok(t.clone())
    }

    /// The first of several alternative names that exists (old BERT
    /// checkpoints call layer-norm parameters gamma/beta; T5 checkpoints may
    /// store the shared embedding under either stack's name).
    pub fn get_any<S: AsRef<str>>(&self, names: &[S], shape: &[usize]) -> Result<Tensor> {
        match names.iter().find(|n| self.tensors.contains_key(n.as_ref())) {
            Some(n) => self.get(n.as_ref(), shape),
            None => {
                let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
                Err(match names.split_first() {
                    Some((first, [])) => self.missing(&format!("tensor {first}")),
                    Some((first, rest)) => self.missing(&format!("tensor {first} (or {})", rest.join(", "))),
                    None => anyhow::anyhow!("no tensor name given"),
                })
            }
        }
    }
}

/// A frozen (detached) tensor on `device`, floating point converted to f32.
fn frozen(t: Tensor, device: &Device) -> candle_core::Result<Tensor> {
    let t = if t.dtype().is_float() { t.to_dtype(DType::F32)? } else { t };
    Ok(t.to_device(device)?.detach())
}
