//! Tokenisation into padded batches with a real `tokenizers` tokenizer.

use attempt_pkg::data::tokenize::{collate, HfTextEncoder};
use attempt_pkg::data::{Example, Label, TextEncoder};

const TOKENIZER: &str = r#"{
 "version": "1.0", "truncation": null,
 "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
 "added_tokens": [], "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
 "model": {"type": "WordLevel", "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3, "again": 4}, "unk_token": "[UNK]"}
}"#;

#[test]
fn file_padding_is_ignored_and_collate_masks_padding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, TOKENIZER).unwrap();
    let tok = HfTextEncoder::from_file(&path).unwrap();
    assert_eq!(tok.pad_id(), 0);
    assert_eq!(tok.encode("hello world", None, 16).unwrap(), vec![2, 3], "no fixed-length padding");
    assert_eq!(tok.encode("hello world again", None, 2).unwrap(), vec![2, 4], "truncation keeps the last id");
    let a = Example { text_a: "hello".into(), text_b: None, label: Label::Class(0) };
    let b = Example { text_a: "hello world again".into(), text_b: None, label: Label::Class(1) };
    let batch = collate(&[&a, &b], &tok, 16, &candle_core::Device::Cpu).unwrap();
    assert_eq!(batch.ids.to_vec2::<u32>().unwrap(), vec![vec![2, 0, 0], vec![2, 3, 4]]);
    assert_eq!(batch.mask.to_vec2::<f32>().unwrap(), vec![vec![1., 0., 0.], vec![1., 1., 1.]]);
    assert!(HfTextEncoder::from_file(&dir.path().join("missing.json")).is_err());
}
