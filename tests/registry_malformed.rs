//! Every malformed authoring directory or tensor file is refused with a
//! message naming the problem, and leaves the registry untouched.

mod common_registry;

use std::fs;

use common_registry::{raw_safetensors, tensor_file, Env, Prompt};

/// Publishes `p`'s directory with `tensor` as its tensor file; asserts a
/// failure whose message contains `expect`, and that nothing was published.
fn refused(env: &Env, p: &Prompt, tensor: &[u8], expect: &str) {
    let dir = p.write();
    fs::write(dir.path().join("prompt.safetensors"), tensor).unwrap();
    let before = env.snapshot();
    let err = env.fails(&["publish", dir.path().to_str().unwrap()]);
    assert!(err.contains(expect), "expected `{expect}` in:\n{err}");
    assert!(env.index_text(&p.name).is_none(), "{} must not be in the index", p.name);
    assert_eq!(env.snapshot(), before, "a refused publish must change nothing");
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn structural_damage_is_refused() {
    let env = Env::new();
    // Create the registry so that the "nothing changed" snapshot is meaningful.
    let ok = Prompt::new("ok-prompt", "1.0.0");
    env.ok(&["publish", ok.write().path().to_str().unwrap()]);

    let p = Prompt::new("bad-prompt", "1.0.0");
    let good = p.tensor_bytes();

    refused(&env, &p, &good[..good.len() - 3], "data area");
    refused(&env, &p, &good[..5], "too short");
    refused(&env, &p, &[], "too short");

    let mut past_eof = good.clone();
    past_eof[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    refused(&env, &p, &past_eof, "runs past the end of the file");

    let data = f32_bytes(&p.values());
    let n = data.len();
    let header = format!(r#"{{"prompt":{{"dtype":"F32","shape":[4,8],"data_offsets":[0,{}]}}}}"#, n + 64);
    refused(&env, &p, &raw_safetensors(&header, &data), "out of bounds");

    let header = format!(r#"{{"prompt":{{"dtype":"F32","shape":[4,8],"data_offsets":[16,{}]}}}}"#, n);
    refused(&env, &p, &raw_safetensors(&header, &data), "needs 128 bytes");

    let header = format!(r#"{{"prompt":{{"dtype":"F32","shape":[4,8],"data_offsets":[{n},0]}}}}"#);
    refused(&env, &p, &raw_safetensors(&header, &data), "reversed");

    // Gap before the tensor: offsets must be contiguous from 0.
    let mut padded = vec![0u8; 8];
    padded.extend_from_slice(&data);
    let header = format!(r#"{{"prompt":{{"dtype":"F32","shape":[4,8],"data_offsets":[8,{}]}}}}"#, n + 8);
    refused(&env, &p, &raw_safetensors(&header, &padded), "contiguous");

    let mut bad_utf8 = raw_safetensors("{\"__metadata__\":{\"k\":\"\u{e9}\"}}", &[]);
    let pos = bad_utf8.iter().position(|&b| b == 0xc3).unwrap();
    bad_utf8[pos] = 0xff;
    refused(&env, &p, &bad_utf8, "not valid UTF-8");

    refused(&env, &p, &raw_safetensors("[1, 2]", &[]), "not a JSON object");
    refused(&env, &p, &raw_safetensors(r#"{"__metadata__":{"k":1}}"#, &[]), "not a string");
}

#[test]
fn tensor_must_match_the_manifest() {
    let env = Env::new();
    let p = Prompt::new("shape-prompt", "1.0.0");

    // Wrong width for the declared hidden size.
    let wide = tensor_file("F32", &[4, 16], &f32_bytes(&[0.1; 64]));
    refused(&env, &p, &wide, "hidden-size is 8");
    // Rank 1, rank 3.
    refused(&env, &p, &tensor_file("F32", &[32], &f32_bytes(&[0.1; 32])), "expected [length, 8]");
    refused(&env, &p, &tensor_file("F32", &[2, 2, 8], &f32_bytes(&[0.1; 32])), "expected [length, 8]");
    // Zero rows.
    refused(&env, &p, &tensor_file("F32", &[0, 8], &[]), "0 rows");
    // Unsupported dtypes.
    refused(&env, &p, &tensor_file("F64", &[4, 8], &[0u8; 256]), "only F32, F16 and BF16");
    refused(&env, &p, &tensor_file("I32", &[4, 8], &[0u8; 128]), "only F32, F16 and BF16");
    // Wrong tensor name, or extra tensors.
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 8], &[0u8; 128]).unwrap();
    let misnamed = safetensors::serialize([("weights", view)], &None).unwrap();
    refused(&env, &p, &misnamed, "exactly one tensor named `prompt`");
    let data = [0u8; 128];
    let a = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 8], &data).unwrap();
    let b = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 8], &data).unwrap();
    let two = safetensors::serialize([("prompt", a), ("extra", b)], &None).unwrap();
    refused(&env, &p, &two, "exactly one tensor named `prompt`");
    // Header says F32 [4,8] but the data is sized for F16: size mismatch.
    let header = r#"{"prompt":{"dtype":"F32","shape":[4,8],"data_offsets":[0,64]}}"#;
    refused(&env, &p, &raw_safetensors(header, &[0u8; 64]), "needs 128 bytes");
    // A file with no tensor at all, for a manifest that declares one.
    refused(&env, &p, &raw_safetensors("{}", &[]), "holds no tensor");
}

#[test]
fn non_finite_values_are_refused() {
    let env = Env::new();
    let p = Prompt::new("nan-prompt", "1.0.0");
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (f32::NEG_INFINITY, "-inf")] {
        let mut values = p.values();
        values[13] = bad;
        let bytes = tensor_file("F32", &[4, 8], &f32_bytes(&values));
        refused(&env, &p, &bytes, &format!("[1, 5] is {shown}"));
    }
    // Half precision: f16 infinity is 0x7c00.
    let mut halfs = vec![0u8; 64];
    halfs[2..4].copy_from_slice(&0x7c00u16.to_le_bytes());
    refused(&env, &p, &tensor_file("F16", &[4, 8], &halfs), "must be finite");
    // bf16 NaN is 0x7fc0.
    let mut bf = vec![0u8; 64];
    bf[62..64].copy_from_slice(&0x7fc0u16.to_le_bytes());
    refused(&env, &p, &tensor_file("BF16", &[4, 8], &bf), "[3, 7] is NaN");
}

#[test]
fn half_precision_prompts_are_accepted_as_is() {
    let env = Env::new();
    let p = Prompt::new("half-prompt", "1.0.0");
    let dir = p.write();
    let halfs: Vec<u8> = (0..32).flat_map(|i| half::f16::from_f32(i as f32 / 8.0).to_le_bytes()).collect();
    fs::write(dir.path().join("prompt.safetensors"), tensor_file("F16", &[4, 8], &halfs)).unwrap();
    env.ok(&["publish", dir.path().to_str().unwrap()]);
    assert_eq!(env.json(&["info", "half-prompt"])["versions"][0]["dtype"], "F16");
}

#[test]
fn bad_manifests_are_refused() {
    let env = Env::new();
    let base = Prompt::new("manifest-prompt", "1.0.0");
    let cases: Vec<(String, &str)> = vec![
        (base.manifest().replace("\"1.0.0\"", "\"1.0\""), "version"),
        (base.manifest().replace("\"1.0.0\"", "\"latest\""), "version"),
        (base.manifest().replace("hidden-size = 8", "hidden-size = 0"), "hidden-size is 0"),
        (base.manifest().replace("fingerprint = \"sha256:1111", "fingerprint = \"sha256:zz11"), "sha256 checksum"),
        (base.manifest().replace("task = \"mnli\"", "task = \"\""), "task must not be empty"),
        (base.manifest().replace("hidden-size", "hidden_size"), "unknown field"),
        (base.manifest().replace("prompt.safetensors", "../prompt.safetensors"), "relative path"),
        (base.manifest().replace("prompt.safetensors", "/etc/passwd"), "relative path"),
        (base.manifest().replace("prompt.safetensors", "missing.safetensors"), "missing.safetensors"),
        (format!("format = 7\n{}", base.manifest()), "newer than this attempt-pkg"),
        ("not toml at all [".to_string(), "not valid TOML"),
        (
            base.manifest().replace("[prompt]\nfile = \"prompt.safetensors\"\n", ""),
            "neither a [prompt] section nor [dependencies]",
        ),
    ];
    for (manifest, expect) in cases {
        let dir = base.write();
        fs::write(dir.path().join("Prompt.toml"), &manifest).unwrap();
        let err = env.fails(&["publish", dir.path().to_str().unwrap()]);
        assert!(err.contains(expect), "expected `{expect}` for manifest:\n{manifest}\ngot:\n{err}");
    }
    let empty = tempfile::tempdir().unwrap();
    assert!(env.fails(&["publish", empty.path().to_str().unwrap()]).contains("needs a Prompt.toml"));
    // None of the refused publishes created the registry.
    assert!(env.fails(&["list"]).contains("no registry"));
}
