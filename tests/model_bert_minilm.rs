//! The real all-MiniLM-L6-v2 against reference sentence embeddings recorded
//! with transformers (scripts/gen_fixtures.py). Runs when the model is found
//! at $ATTEMPT_MINILM_DIR or $ATTEMPT_HOME/models/all-MiniLM-L6-v2; with
//! ATTEMPT_REQUIRE_MINILM=1 (scripts/test.sh sets it after fetching the
//! model) a missing model is a failure, not a skip.

use std::path::PathBuf;

use attempt_pkg::model::load_model;
use candle_core::{DType, Device, Tensor};

fn minilm_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ATTEMPT_MINILM_DIR").map(PathBuf::from),
        std::env::var_os("ATTEMPT_HOME").map(|h| PathBuf::from(h).join("models/all-MiniLM-L6-v2")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".attempt/models/all-MiniLM-L6-v2")),
    ];
    let found = candidates.into_iter().flatten().find(|d| d.join("config.json").is_file());
    if found.is_none() && std::env::var("ATTEMPT_REQUIRE_MINILM").as_deref() == Ok("1") {
        panic!("ATTEMPT_REQUIRE_MINILM=1 but all-MiniLM-L6-v2 was not found (run `attempt-pkg model fetch minilm`)");
    }
    found
}

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    pooled: Vec<Vec<f32>>,
}

#[test]
fn minilm_pooled_embeddings_match_reference() {
    let Some(dir) = minilm_dir() else {
        eprintln!("skipping: all-MiniLM-L6-v2 not present (set ATTEMPT_MINILM_DIR or fetch it)");
        return;
    };
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/minilm_reference.json"),
    )
    .unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    let loaded = load_model(&dir, &Device::Cpu).unwrap();
    let tok = loaded.tokenizer.as_ref().expect("MiniLM ships tokenizer.json");
    let pooling = loaded.pooling.expect("MiniLM is a sentence-transformers model");
    assert!(pooling.normalize);
    let batch = tok.encode(&reference.sentences).unwrap();
    for (i, want) in reference.input_ids.iter().enumerate() {
        let got: Vec<u32> = batch.ids[i].iter().zip(&batch.mask[i]).filter(|(_, &m)| m == 1).map(|(&t, _)| t).collect();
        assert_eq!(&got, want, "token ids of sentence {i}");
    }
    let (n, l) = (batch.len(), batch.seq_len());
    let ids = Tensor::new(batch.ids.concat(), &Device::Cpu).unwrap().reshape((n, l)).unwrap();
    let mask =
        Tensor::new(batch.mask.concat(), &Device::Cpu).unwrap().reshape((n, l)).unwrap().to_dtype(DType::F32).unwrap();
    let enc = loaded.model.encoder();
    let hidden = enc.encode(&enc.embed_tokens(&ids).unwrap(), &mask).unwrap();
    let pooled = pooling.apply(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
    for (i, (got, want)) in pooled.iter().zip(&reference.pooled).enumerate() {
        let dot: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
        let na: f32 = got.iter().map(|a| a * a).sum::<f32>().sqrt();
        let nb: f32 = want.iter().map(|a| a * a).sum::<f32>().sqrt();
        let cos = dot / (na * nb);
        assert!(cos >= 0.9999, "sentence {i} ({:?}): cosine {cos}", reference.sentences[i]);
        let max_err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_err < 1e-4, "sentence {i}: max abs error {max_err}");
    }
}
