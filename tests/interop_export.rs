//! `attempt-pkg export`: resolve NAME@VER, verify, write peft/safetensors/pt;
//! the exports import back to the same bytes.

mod interop_common;

use std::fs;

use attempt_pkg::package::Dtype;
use interop_common::{assert_prompt, built_prompt, fixture, safetensors_tensor, values, Env, FINGERPRINT};

/// Publishes `fixture` as `name@version` (hidden 32, base model `tiny-bert`).
fn publish(env: &Env, fixture_name: &str, name: &str, version: &str) {
    let src = fixture(fixture_name).to_string_lossy().into_owned();
    let args = Env::import_args(
        &src,
        name,
        version,
        &["--publish", "--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny-bert"],
    );
    env.ok(&args);
}

fn reimport(env: &Env, source: &str, out: &str) -> attempt_pkg::package::PromptTensor {
    let out_dir = env.p(out);
    let args = Env::import_args(
        source,
        "again",
        "1.0.0",
        &["--out", &out_dir, "--base-model", FINGERPRINT, "--hidden-size", "32", "--base-model-name", "tiny-bert"],
    );
    env.ok(&args);
    built_prompt(&env.path(out)).1
}

#[test]
fn pt_export_round_trips_bit_exact() {
    let env = Env::new();
    publish(&env, "tiny.pt", "tiny-prompt", "1.0.0");
    publish(&env, "tiny_bf16.pt", "half-prompt", "1.0.0");
    let out = env.ok(&["export", "tiny-prompt@1.0.0", "--format", "pt", "--out", &env.p("pt")]);
    assert!(out.contains("Exported tiny-prompt@1.0.0") && out.contains("prompt.pt"), "{out}");
    let back = reimport(&env, &env.p("pt/prompt.pt"), "back");
    assert_prompt(&back, Dtype::F32, 4, &values(4));

    // bf16 stays bf16 through a BFloat16Storage.
    env.ok(&["export", "half-prompt", "--format", "pt", "--out", &env.p("pt16")]);
    let back = reimport(&env, &env.p("pt16/prompt.pt"), "back16");
    assert_prompt(&back, Dtype::BF16, 2, &values(2));

    // Deterministic: exporting again gives the same bytes.
    let first = fs::read(env.path("pt/prompt.pt")).unwrap();
    env.ok(&["export", "tiny-prompt@1.0.0", "--format", "pt", "--out", &env.p("pt"), "--force"]);
    assert_eq!(fs::read(env.path("pt/prompt.pt")).unwrap(), first);
}

#[test]
fn peft_export_has_the_fields_peft_reads() {
    let env = Env::new();
    publish(&env, "tiny.pt", "tiny-prompt", "1.0.0");
    env.ok(&[
        "export",
        "tiny-prompt@1.0.0",
        "--format",
        "peft",
        "--out",
        &env.p("peft"),
        "--task-type",
        "SEQ_2_SEQ_LM",
    ]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path("peft/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "PROMPT_TUNING");
    assert_eq!(cfg["num_virtual_tokens"], 4);
    assert_eq!(cfg["token_dim"], 32);
    assert_eq!(cfg["num_transformer_submodules"], 1);
    assert_eq!(cfg["base_model_name_or_path"], "tiny-bert");
    assert_eq!(cfg["task_type"], "SEQ_2_SEQ_LM");
    assert_eq!(cfg["inference_mode"], true);
    let (dtype, shape, data) = safetensors_tensor(&env.path("peft/adapter_model.safetensors"), "prompt_embeddings");
    assert_eq!((dtype.as_str(), shape), ("F32", vec![4, 32]));
    let expected: Vec<u8> = values(4).iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(data, expected);
    // PEFT marks its safetensors files as torch-format.
    let bytes = fs::read(env.path("peft/adapter_model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));

    // …and the adapter imports back to the same prompt.
    let back = reimport(&env, &env.p("peft"), "back");
    assert_prompt(&back, Dtype::F32, 4, &values(4));

    let err = env.fails(&["export", "tiny-prompt", "--format", "peft", "--out", &env.p("x"), "--task-type", "NOPE"]);
    assert!(err.contains("--task-type NOPE") && err.contains("FEATURE_EXTRACTION"), "{err}");
    assert!(!env.path("x").exists());
}

#[test]
fn safetensors_export_names_the_tensor_prompt() {
    let env = Env::new();
    publish(&env, "tiny_f16.pt", "f16-prompt", "1.0.0");
    env.ok(&["export", "f16-prompt", "--format", "safetensors", "--out", &env.p("st")]);
    let (dtype, shape, data) = safetensors_tensor(&env.path("st/prompt.safetensors"), "prompt");
    assert_eq!((dtype.as_str(), shape), ("F16", vec![3, 32]));
    let expected: Vec<u8> = values(3).iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
    assert_eq!(data, expected);
    let back = reimport(&env, &env.p("st/prompt.safetensors"), "back");
    assert_prompt(&back, Dtype::F16, 3, &values(3));
}

#[test]
fn export_resolves_versions_and_refuses_damage() {
    let env = Env::new();
    publish(&env, "tiny.pt", "tiny-prompt", "1.0.0");
    publish(&env, "tiny_f16.pt", "tiny-prompt", "1.2.0");
    publish(&env, "tiny_bf16.pt", "tiny-prompt", "2.0.0");

    let out = env.ok(&["export", "tiny-prompt@^1", "--format", "safetensors", "--out", &env.p("a")]);
    assert!(out.contains("tiny-prompt@1.2.0"), "{out}");
    let out = env.ok(&["export", "tiny-prompt", "--format", "safetensors", "--out", &env.p("b")]);
    assert!(out.contains("tiny-prompt@2.0.0"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&[
        "--json",
        "export",
        "tiny-prompt@=1.0.0",
        "--format",
        "pt",
        "--out",
        &env.p("c"),
    ]))
    .unwrap();
    assert_eq!(json["version"], "1.0.0");

    let err = env.fails(&["export", "tiny-prompt@1.1.0", "--format", "pt", "--out", &env.p("d")]);
    assert!(err.contains("no version 1.1.0") && err.contains("1.2.0"), "{err}");
    let err = env.fails(&["export", "tiny-prompt@^3", "--format", "pt", "--out", &env.p("d")]);
    assert!(err.contains("matches `^3`"), "{err}");
    let err = env.fails(&["export", "missing-prompt", "--format", "pt", "--out", &env.p("d")]);
    assert!(err.contains("`missing-prompt` is not in the registry"), "{err}");

    // An existing output needs --force, and nothing is half-written.
    let err = env.fails(&["export", "tiny-prompt", "--format", "safetensors", "--out", &env.p("a")]);
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");

    // A damaged blob is caught by the checksum before anything is written.
    let entries = registry_index::parse_index_file(
        "tiny-prompt",
        &fs::read_to_string(env.registry().join("index").join(registry_index::index_path("tiny-prompt").unwrap()))
            .unwrap(),
    )
    .unwrap();
    let newest = entries.iter().find(|e| e.vers.to_string() == "2.0.0").unwrap();
    let blob = env.registry().join("blobs").join(registry_index::blob_path(&newest.cksum));
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&blob, &bytes).unwrap();
    let err = env.fails(&["export", "tiny-prompt@2.0.0", "--format", "pt", "--out", &env.p("e")]);
    assert!(err.contains("damaged") && err.contains("checksum"), "{err}");
    assert!(!env.path("e").exists());
}

#[test]
fn export_needs_an_existing_registry() {
    let env = Env::new();
    let err = env.fails(&["export", "tiny-prompt", "--format", "pt", "--out", &env.p("x")]);
    assert!(!err.is_empty());
    assert!(!env.registry().exists(), "export must not create a registry");
}
