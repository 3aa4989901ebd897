//! `attempt-pkg import`: PyTorch checkpoints (restricted unpickler), PEFT
//! adapters and safetensors files into authoring directories or the registry.

mod interop_common;

use std::fs;
use std::io::Write;
use std::path::Path;

use attempt_pkg::package::{Dtype, Manifest};
use interop_common::{assert_prompt, built_prompt, fixture, sha256_hex, value, values, Env, FINGERPRINT};

fn import_to(env: &Env, source: &Path, out: &str, extra: &[&str]) -> String {
    let src = source.to_string_lossy().into_owned();
    let out = env.p(out);
    let mut args = Env::import_args(&src, "imported", "1.0.0", &["--out", &out]);
    args.extend_from_slice(extra);
    env.ok(&args)
}

fn import_fails(env: &Env, source: &Path, out: &str, extra: &[&str]) -> String {
    let src = source.to_string_lossy().into_owned();
    let out_path = env.p(out);
    let mut args = Env::import_args(&src, "imported", "1.0.0", &["--out", &out_path]);
    args.extend_from_slice(extra);
    let err = env.fails(&args);
    assert!(!env.path(out).exists(), "a refused import must write nothing, but {out} exists");
    err
}

#[test]
fn tiny_pt_imports_exact_values_bound_to_the_model_dir() {
    let env = Env::new();
    let model = env.model_dir("tiny-bert");
    let m = model.to_string_lossy().into_owned();
    let out =
        import_to(&env, &fixture("tiny.pt"), "pkg", &["--base-model", &m, "--description", "tiny", "--license", "MIT"]);
    assert!(out.contains("Imported imported@1.0.0 [4, 32] F32"), "{out}");

    let (artifact, prompt) = built_prompt(&env.path("pkg"));
    assert_prompt(&prompt, Dtype::F32, 4, &values(4));
    let manifest = Manifest::load(&env.path("pkg")).unwrap();
    assert_eq!(manifest, *artifact.manifest());
    assert_eq!(manifest.base_model.name, "tiny-bert");
    assert_eq!(manifest.base_model.hidden_size, 32);
    let fp = attempt_pkg::model::fingerprint::compute(&model).unwrap();
    assert_eq!(manifest.base_model.fingerprint.prefixed(), fp);
    assert_eq!(manifest.package.description, "tiny");
    assert_eq!(manifest.package.license.as_deref(), Some("MIT"));
    assert_eq!(manifest.provenance["imported-from"], "pytorch tiny.pt");
    let source_hash = sha256_hex(&fs::read(fixture("tiny.pt")).unwrap());
    assert_eq!(manifest.provenance["source-sha256"], format!("sha256:{source_hash}"));
}

#[test]
fn half_precision_keeps_its_dtype() {
    let env = Env::new();
    let fp = ["--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny"];
    import_to(&env, &fixture("tiny_f16.pt"), "f16", &fp);
    assert_prompt(&built_prompt(&env.path("f16")).1, Dtype::F16, 3, &values(3));
    import_to(&env, &fixture("tiny_bf16.pt"), "bf16", &fp);
    assert_prompt(&built_prompt(&env.path("bf16")).1, Dtype::BF16, 2, &values(2));
}

#[test]
fn strided_views_and_storage_offsets_are_materialised() {
    let env = Env::new();
    let fp = ["--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny"];
    // transposed.pt = base[32, 4].t(): element [r][c] = base[c][r].
    import_to(&env, &fixture("transposed.pt"), "t", &fp);
    let expected: Vec<f32> = (0..4).flat_map(|r| (0..32).map(move |c| value(c * 4 + r))).collect();
    assert_prompt(&built_prompt(&env.path("t")).1, Dtype::F32, 4, &expected);
    // offset.pt = base[6, 32][2:]: starts 64 elements into its storage.
    import_to(&env, &fixture("offset.pt"), "o", &fp);
    let expected: Vec<f32> = (64..6 * 32).map(value).collect();
    assert_prompt(&built_prompt(&env.path("o")).1, Dtype::F32, 4, &expected);
    // expanded.pt = base[1, 32].expand(4, 32): stride 0 repeats the one row.
    import_to(&env, &fixture("expanded.pt"), "e", &fp);
    let expected: Vec<f32> = (0..4).flat_map(|_| values(1)).collect();
    assert_prompt(&built_prompt(&env.path("e")).1, Dtype::F32, 4, &expected);
}

#[test]
fn dict_checkpoints_need_a_key_when_ambiguous() {
    let env = Env::new();
    let fp = ["--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny"];
    let err = import_fails(&env, &fixture("dict.pt"), "d", &fp);
    assert!(err.contains("--tensor KEY"), "{err}");
    assert!(err.contains("`prompt` [4, 32] F32") && err.contains("`other` [2, 32] F32"), "{err}");

    let mut with_key = fp.to_vec();
    with_key.extend(["--tensor", "nope"]);
    let err = import_fails(&env, &fixture("dict.pt"), "d", &with_key);
    assert!(err.contains("no tensor `nope`") && err.contains("`prompt`"), "{err}");

    let mut with_key = fp.to_vec();
    with_key.extend(["--tensor", "other"]);
    import_to(&env, &fixture("dict.pt"), "d", &with_key);
    assert_prompt(&built_prompt(&env.path("d")).1, Dtype::F32, 2, &values(2));
    let manifest = Manifest::load(&env.path("d")).unwrap();
    assert_eq!(manifest.provenance["imported-from"], "pytorch dict.pt [other]");

    // One tensor nested in a training checkpoint (next to numbers) is found alone.
    import_to(&env, &fixture("nested.pt"), "n", &fp);
    assert_prompt(&built_prompt(&env.path("n")).1, Dtype::F32, 4, &values(4));
    let manifest = Manifest::load(&env.path("n")).unwrap();
    assert_eq!(manifest.provenance["imported-from"], "pytorch nested.pt [state_dict.prompt_embeddings]");

    // --tensor on a bare tensor is a mistake worth pointing out.
    let mut with_key = fp.to_vec();
    with_key.extend(["--tensor", "prompt"]);
    let err = import_fails(&env, &fixture("tiny.pt"), "x", &with_key);
    assert!(err.contains("single tensor"), "{err}");
}

/// A zip-format checkpoint whose data.pkl is `pickle` (as torch.save lays it out).
fn checkpoint_with_pickle(pickle: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn malicious_pickles_are_refused_without_running_anything() {
    let env = Env::new();
    let marker = env.path("pwned");
    let command = format!("touch {}", marker.display());
    let fp = ["--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny"];

    // os.system("touch …") — GLOBAL + REDUCE, the classic pickle exploit.
    let mut pickle = b"\x80\x02cos\nsystem\nq\x00X".to_vec();
    pickle.extend_from_slice(&(command.len() as u32).to_le_bytes());
    pickle.extend_from_slice(command.as_bytes());
    pickle.extend_from_slice(b"q\x01\x85q\x02Rq\x03.");
    let evil = env.path("evil.pt");
    fs::write(&evil, checkpoint_with_pickle(&pickle)).unwrap();
    let err = import_fails(&env, &evil, "out", &fp);
    assert!(err.contains("`os.system`") && err.contains("not plain tensor data"), "{err}");
    assert!(err.contains("nothing was executed"), "{err}");

    // builtins.eval via protocol 4's STACK_GLOBAL, tucked inside a dict.
    let mut pickle =
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x06prompt\x94\x8c\x08builtins\x8c\x04eval\x93\x8c"
            .to_vec();
    let code = format!("__import__('os').system('{command}')");
    pickle.push(code.len() as u8);
    pickle.extend_from_slice(code.as_bytes());
    pickle.extend_from_slice(b"\x85R\x94s.");
    let evil2 = env.path("evil2.pt");
    fs::write(&evil2, checkpoint_with_pickle(&pickle)).unwrap();
    let err = import_fails(&env, &evil2, "out", &fp);
    assert!(err.contains("`builtins.eval`"), "{err}");

    // A legacy (non-zip) pickle file is refused as a format, not parsed.
    let evil3 = env.path("evil3.pt");
    fs::write(&evil3, &pickle).unwrap();
    let err = import_fails(&env, &evil3, "out", &fp);
    assert!(err.contains("legacy"), "{err}");

    // The same payload in a PEFT adapter_model.bin is refused too.
    let adapter = env.path("evil-adapter");
    fs::create_dir_all(&adapter).unwrap();
    fs::copy(fixture("peft_adapter/adapter_config.json"), adapter.join("adapter_config.json")).unwrap();
    fs::write(adapter.join("adapter_model.bin"), checkpoint_with_pickle(&pickle)).unwrap();
    let mut args = fp.to_vec();
    args[5] = "tiny-bert";
    let err = import_fails(&env, &adapter, "out", &args);
    assert!(err.contains("`builtins.eval`"), "{err}");

    assert!(!marker.exists(), "the pickle's payload ran");
    assert!(!env.registry().exists(), "a refused import must not create a registry");
}

#[test]
fn wrong_widths_and_dtypes_are_refused_before_writing() {
    let env = Env::new();
    let model = env.model_dir("tiny-bert");
    let m = model.to_string_lossy().into_owned();
    let err = import_fails(&env, &fixture("wide.pt"), "w", &["--base-model", &m]);
    assert!(err.contains("[4, 48]") && err.contains("hidden size 32") && err.contains("[length, 32]"), "{err}");
    assert!(err.contains("`tiny-bert`"), "{err}");

    let err = import_fails(&env, &fixture("tiny.pt"), "w", &["--base-model", &m, "--hidden-size", "64"]);
    assert!(err.contains("--hidden-size 64") && err.contains("32"), "{err}");

    let err = import_fails(&env, &fixture("tiny.pt"), "w", &["--base-model", FINGERPRINT]);
    assert!(err.contains("--hidden-size"), "{err}");
    let err = import_fails(&env, &fixture("tiny.pt"), "w", &["--base-model", FINGERPRINT, "--hidden-size", "32"]);
    assert!(err.contains("--base-model-name"), "{err}");
    let err = import_fails(&env, &fixture("tiny.pt"), "w", &["--base-model", "no-such-model"]);
    assert!(err.contains("neither a model directory nor a fingerprint"), "{err}");

    let err = import_fails(&env, &fixture("f64.pt"), "w", &["--base-model", &m]);
    assert!(err.contains("float64"), "{err}");
}

#[test]
fn peft_adapter_imports_with_model_checks() {
    let env = Env::new();
    let model = env.model_dir("tiny-bert");
    let m = model.to_string_lossy().into_owned();
    import_to(&env, &fixture("peft_adapter"), "peft", &["--base-model", &m]);
    assert_prompt(&built_prompt(&env.path("peft")).1, Dtype::F32, 4, &values(4));
    let manifest = Manifest::load(&env.path("peft")).unwrap();
    assert_eq!(manifest.base_model.name, "tiny-bert");
    assert_eq!(manifest.provenance["peft-type"], "PROMPT_TUNING");
    assert_eq!(manifest.provenance["peft-task-type"], "FEATURE_EXTRACTION");
    assert_eq!(manifest.provenance["imported-from"], "peft peft_adapter");

    // The adapter names its model; a directory known by another name is refused…
    let other = env.model_dir("other-model");
    let o = other.to_string_lossy().into_owned();
    let err = import_fails(&env, &fixture("peft_adapter"), "p2", &["--base-model", &o]);
    assert!(err.contains("`tiny-bert`") && err.contains("`other-model`") && err.contains("--base-model-name"), "{err}");
    // …unless the user confirms they are the same model.
    import_to(&env, &fixture("peft_adapter"), "p2", &["--base-model", &o, "--base-model-name", "tiny-bert"]);

    // token_dim must be the model's hidden size.
    let err = import_fails(&env, &fixture("peft_adapter"), "p3", &["--base-model", FINGERPRINT, "--hidden-size", "64"]);
    assert!(err.contains("token_dim is 32") && err.contains("hidden size 64"), "{err}");
    // With a bare fingerprint, the adapter's own record names the model.
    import_to(&env, &fixture("peft_adapter"), "p4", &["--base-model", FINGERPRINT, "--hidden-size", "32"]);
    assert_eq!(Manifest::load(&env.path("p4")).unwrap().base_model.name, "tiny-bert");
}

/// A copy of the PEFT fixture with `edit` applied to its config.
fn edited_adapter(env: &Env, name: &str, edit: impl Fn(&mut serde_json::Value)) -> std::path::PathBuf {
    let dir = env.path(name);
    fs::create_dir_all(&dir).unwrap();
    let src = fixture("peft_adapter");
    fs::copy(src.join("adapter_model.safetensors"), dir.join("adapter_model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&fs::read(src.join("adapter_config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    fs::write(dir.join("adapter_config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    dir
}

#[test]
fn peft_config_must_match_the_tensor() {
    let env = Env::new();
    let fp = ["--base-model", FINGERPRINT, "--hidden-size", "32"];
    let wide = edited_adapter(&env, "a1", |c| c["token_dim"] = 48.into());
    let err = import_fails(&env, &wide, "o", &fp);
    assert!(err.contains("token_dim = 48") && err.contains("dimension 1"), "{err}");
    let long = edited_adapter(&env, "a2", |c| c["num_virtual_tokens"] = 5.into());
    let err = import_fails(&env, &long, "o", &fp);
    assert!(err.contains("5 × 1 = 5") && err.contains("dimension 0"), "{err}");
    let lora = edited_adapter(&env, "a3", |c| c["peft_type"] = "LORA".into());
    let err = import_fails(&env, &lora, "o", &fp);
    assert!(err.contains("peft_type is LORA"), "{err}");
}

#[test]
fn seq2seq_adapter_imports_the_encoder_prompt() {
    let env = Env::new();
    let src = fixture("peft_seq2seq").to_string_lossy().into_owned();
    let out = env.p("s2s");
    let args =
        Env::import_args(&src, "s2s", "0.1.0", &["--out", &out, "--base-model", FINGERPRINT, "--hidden-size", "32"]);
    let notes = env.ok_stderr(&args);
    assert!(notes.contains("2 transformer submodules") && notes.contains("rows 0..3"), "{notes}");
    // The fixture's 6 rows are values(6); the encoder's are the first 3.
    assert_prompt(&built_prompt(&env.path("s2s")).1, Dtype::F32, 3, &values(3));
    assert_eq!(Manifest::load(&env.path("s2s")).unwrap().base_model.name, "tiny-t5");
}

#[test]
fn safetensors_import_picks_the_named_tensor() {
    let env = Env::new();
    let fp = ["--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny"];
    let err = import_fails(&env, &fixture("prompts.safetensors"), "s", &fp);
    assert!(
        err.contains("--tensor KEY") && err.contains("`mnli` [4, 32] F32") && err.contains("`sst2` [5, 32] F32"),
        "{err}"
    );
    let mut args = fp.to_vec();
    args.extend(["--tensor", "sst2"]);
    import_to(&env, &fixture("prompts.safetensors"), "s", &args);
    assert_prompt(&built_prompt(&env.path("s")).1, Dtype::F32, 5, &values(5));
    assert_eq!(
        Manifest::load(&env.path("s")).unwrap().provenance["imported-from"],
        "safetensors prompts.safetensors [sst2]"
    );
}

#[test]
fn existing_output_needs_force_and_publish_goes_to_the_registry() {
    let env = Env::new();
    let fp = ["--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny"];
    import_to(&env, &fixture("tiny.pt"), "pkg", &fp);
    let before = fs::read(env.path("pkg/prompt.safetensors")).unwrap();
    let err = env.fails(&Env::import_args(
        &fixture("tiny_f16.pt").to_string_lossy(),
        "imported",
        "1.0.0",
        &["--out", &env.p("pkg"), "--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny"],
    ));
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(fs::read(env.path("pkg/prompt.safetensors")).unwrap(), before, "refused import changed the directory");
    let mut forced = fp.to_vec();
    forced.push("--force");
    import_to(&env, &fixture("tiny_f16.pt"), "pkg", &forced);
    assert_eq!(built_prompt(&env.path("pkg")).1.dtype(), Dtype::F16);

    let err = env.fails(&Env::import_args(&fixture("tiny.pt").to_string_lossy(), "x", "1.0.0", &fp));
    assert!(err.contains("--out") && err.contains("--publish"), "{err}");

    // --publish: the same artifact that the authoring directory would build.
    let src = fixture("tiny.pt").to_string_lossy().into_owned();
    let pub_dir = env.p("pub");
    let mut args = Env::import_args(&src, "tiny-prompt", "2.0.0", &["--publish", "--out", &pub_dir]);
    args.extend_from_slice(&fp);
    let out = env.ok(&args);
    let (artifact, _) = built_prompt(&env.path("pub"));
    assert!(out.contains(&format!("Published tiny-prompt@2.0.0 ({})", artifact.checksum().prefixed())), "{out}");
    let rel = registry_index::index_path("tiny-prompt").unwrap();
    let index = fs::read_to_string(env.registry().join("index").join(rel)).unwrap_or_default();
    assert!(index.contains(artifact.checksum().hex()), "index: {index}");

    // Published versions are immutable: a second import of 2.0.0 is refused
    // before its authoring directory is written.
    let src16 = fixture("tiny_f16.pt").to_string_lossy().into_owned();
    let pub2 = env.p("pub2");
    let mut args = Env::import_args(&src16, "tiny-prompt", "2.0.0", &["--publish", "--out", &pub2]);
    args.extend_from_slice(&fp);
    env.fails(&args);
    assert!(!env.path("pub2").exists(), "a refused publish must not leave a directory");
}

/// The real prompt released with the official ATTEMPT code (ReCoRD, T5-base).
/// sha256 of its f32 bytes as `torch.load(path, weights_only=True,
/// map_location="cpu").numpy().tobytes()` gives them (torch 2.15).
const OFFICIAL_RECORD_F32_SHA256: &str = "80f9480ccae72420a4404fe12b2695b3b5fe2e1f3624f66d40b168127eb46dc6";

#[test]
fn official_attempt_prompt_imports_bit_exact() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/official-attempt/record_prefix_embeddings.pt");
    if !path.exists() {
        eprintln!("note: skipping: the official ATTEMPT fixture {} is not present", path.display());
        return;
    }
    let env = Env::new();
    let src = path.to_string_lossy().into_owned();
    let out = env.p("record");
    let args = Env::import_args(
        &src,
        "record-prompt",
        "1.0.0",
        &["--out", &out, "--base-model", FINGERPRINT, "--hidden-size", "768", "--base-model-name", "t5-base"],
    );
    env.ok(&args);
    let (_, prompt) = built_prompt(&env.path("record"));
    assert_eq!((prompt.dtype(), prompt.length(), prompt.hidden()), (Dtype::F32, 100, 768));
    assert_eq!(sha256_hex(prompt.bytes()), OFFICIAL_RECORD_F32_SHA256);
    let mean_abs = prompt.to_f32_vec().iter().map(|v| v.abs() as f64).sum::<f64>() / (100.0 * 768.0);
    assert!((mean_abs - 0.81).abs() < 0.01, "mean |x| = {mean_abs}");
}

#[test]
fn other_architectures_are_bound_by_fingerprint_and_config_width() {
    let env = Env::new();
    let model = env.model_dir("tiny-llama");
    fs::write(
        model.join("config.json"),
        r#"{"model_type": "llama", "hidden_size": 32, "_name_or_path": "org/tiny-llama"}"#,
    )
    .unwrap();
    let m = model.to_string_lossy().into_owned();
    import_to(&env, &fixture("tiny.pt"), "l", &["--base-model", &m]);
    let manifest = Manifest::load(&env.path("l")).unwrap();
    assert_eq!(manifest.base_model.name, "org/tiny-llama");
    assert_eq!(manifest.base_model.hidden_size, 32);
    assert_eq!(manifest.base_model.fingerprint.prefixed(), attempt_pkg::model::fingerprint::compute(&model).unwrap());

    fs::write(model.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let err = import_fails(&env, &fixture("tiny.pt"), "l2", &["--base-model", &m]);
    assert!(err.contains("no hidden size"), "{err}");
}
