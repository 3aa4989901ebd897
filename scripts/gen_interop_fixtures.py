#!/usr/bin/env python3
"""Generate the small files the interop tests import (tests/fixtures/interop/).

Needs the developer venv (torch, safetensors, transformers, peft):

    /work/venv-dev/bin/python scripts/gen_interop_fixtures.py

Every prompt value is `value(i) = (i - 64) / 16` for flat index i (exact in
f32, f16 and bf16), so the Rust tests recompute the expected numbers instead
of trusting another file. Widths are 32, the hidden size of the tiny BERT in
tests/fixtures/bert/model.
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "interop")
HIDDEN = 32


def prompt(rows, width=HIDDEN, dtype=torch.float32):
    flat = (torch.arange(rows * width, dtype=torch.float64) - 64) / 16
    return flat.reshape(rows, width).to(dtype)


def save(obj, name):
    torch.save(obj, os.path.join(OUT, name))


def peft_adapter(name, model, task_type, rows):
    """A real PEFT prompt-tuning adapter, with known prompt values."""
    from peft import PromptTuningConfig, get_peft_model

    cfg = PromptTuningConfig(task_type=task_type, num_virtual_tokens=rows)
    peft_model = get_peft_model(model, cfg)
    emb = peft_model.prompt_encoder["default"].embedding
    n = emb.weight.shape[0]
    with torch.no_grad():
        emb.weight.copy_(prompt(n))
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    peft_model.save_pretrained(path)
    # PEFT writes a README.md model card; the tests do not need it.
    readme = os.path.join(path, "README.md")
    if os.path.exists(readme):
        os.remove(readme)


def main():
    os.makedirs(OUT, exist_ok=True)
    save(prompt(4), "tiny.pt")
    save(prompt(3, dtype=torch.float16), "tiny_f16.pt")
    save(prompt(2, dtype=torch.bfloat16), "tiny_bf16.pt")
    # A non-contiguous view (stride (1, 4)) and a view with a storage offset:
    # torch.save keeps the whole storage and the view's geometry.
    save(prompt(HIDDEN, 4).t(), "transposed.pt")
    save(prompt(6)[2:], "offset.pt")
    # An expanded view (stride 0 along rows): every row is the same storage row.
    save(prompt(1).expand(4, HIDDEN), "expanded.pt")
    # Dicts: several tensors (needs --tensor), and one tensor nested in a
    # training checkpoint next to plain numbers (picked automatically).
    save({"prompt": prompt(4), "other": prompt(2), "step": 100}, "dict.pt")
    save({"state_dict": {"prompt_embeddings": prompt(4)}, "epoch": 3, "lr": 0.3}, "nested.pt")
    save(prompt(4, width=48), "wide.pt")
    save(prompt(4).double(), "f64.pt")
    save_file({"mnli": prompt(4), "sst2": prompt(5)}, os.path.join(OUT, "prompts.safetensors"))

    from transformers import BertConfig, BertModel, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    bert_cfg = BertConfig(vocab_size=50, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=37)
    bert_cfg._name_or_path = "tiny-bert"
    peft_adapter("peft_adapter", BertModel(bert_cfg), "FEATURE_EXTRACTION", 4)
    t5_cfg = T5Config(vocab_size=50, d_model=HIDDEN, d_kv=8, d_ff=37, num_layers=1, num_heads=2)
    t5_cfg._name_or_path = "tiny-t5"
    peft_adapter("peft_seq2seq", T5ForConditionalGeneration(t5_cfg), "SEQ_2_SEQ_LM", 3)
    with open(os.path.join(OUT, "peft_seq2seq", "adapter_config.json")) as f:
        assert json.load(f)["num_transformer_submodules"] == 2, "expected an encoder and a decoder prompt"
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
