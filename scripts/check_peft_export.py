#!/usr/bin/env python3
"""Dev check (not part of `cargo test`): exports made by attempt-pkg load in
the Python tools themselves.

    cargo build && /work/venv-dev/bin/python scripts/check_peft_export.py

Needs torch, safetensors, transformers and peft. In a temporary
ATTEMPT_HOME it imports tests/fixtures/interop/tiny.pt, publishes it, exports
it as peft / pt / safetensors, then checks that
- peft.PeftModel.from_pretrained loads the adapter onto a tiny BERT of the
  same width, with exactly the prompt's values, and runs a forward pass;
- torch.load(weights_only=True) reads the pt export, bit-exact;
- safetensors reads the safetensors export, bit-exact;
- (when present) the official ATTEMPT prompt survives import → export pt →
  torch.load bit-exact.
Set ATTEMPT_PKG_BIN to test another binary.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.environ.get("ATTEMPT_PKG_BIN", os.path.join(ROOT, "target", "debug", "attempt-pkg"))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "interop", "tiny.pt")
OFFICIAL = os.path.join(ROOT, "..", "shared", "fixtures", "official-attempt", "record_prefix_embeddings.pt")
FP = "sha256:" + "3" * 64


def run(home, *args):
    env = dict(os.environ, ATTEMPT_HOME=home)
    env.pop("ATTEMPT_REGISTRY", None)
    res = subprocess.run([BIN, *args], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"attempt-pkg {' '.join(args)} failed:\n{res.stderr}")
    return res.stdout


def publish(home, source, name, hidden, base_name):
    run(home, "import", source, "--name", name, "--version", "1.0.0", "--task", "check",
        "--base-model", FP, "--hidden-size", str(hidden), "--base-model-name", base_name, "--publish")


def check_peft(home, expected):
    from peft import PeftModel
    from transformers import BertConfig, BertModel

    out = os.path.join(home, "peft")
    run(home, "export", "tiny-prompt@1.0.0", "--format", "peft", "--out", out)
    cfg = json.load(open(os.path.join(out, "adapter_config.json")))
    base = BertModel(BertConfig(vocab_size=50, hidden_size=cfg["token_dim"], num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=37))
    model = PeftModel.from_pretrained(base, out)
    weight = model.prompt_encoder["default"].embedding.weight.detach()
    assert torch.equal(weight, expected), "PEFT loaded different prompt values"
    ids = torch.tensor([[1, 2, 3]])
    hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    assert hidden.shape == (1, 3 + cfg["num_virtual_tokens"], cfg["token_dim"]), hidden.shape
    print(f"peft: PeftModel.from_pretrained OK ({type(model).__name__}, prompt {tuple(weight.shape)}, forward {tuple(hidden.shape)})")


def check_peft_seq2seq(home, expected):
    """ATTEMPT's backbones are T5: the adapter must also drive a seq2seq model."""
    from peft import PeftModel
    from transformers import T5Config, T5ForConditionalGeneration

    out = os.path.join(home, "peft-s2s")
    run(home, "export", "tiny-prompt@1.0.0", "--format", "peft", "--task-type", "SEQ_2_SEQ_LM", "--out", out)
    base = T5ForConditionalGeneration(T5Config(vocab_size=50, d_model=expected.shape[1], d_kv=8, d_ff=37,
                                               num_layers=1, num_heads=2, decoder_start_token_id=0))
    model = PeftModel.from_pretrained(base, out)
    assert torch.equal(model.prompt_encoder["default"].embedding.weight.detach(), expected)
    ids = torch.tensor([[1, 2, 3]])
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([[4, 5]])).loss
    assert torch.isfinite(loss), loss
    print(f"peft: SEQ_2_SEQ_LM adapter loads on T5 ({type(model).__name__}) and trains (loss {loss.item():.3f})")


def check_pt_and_safetensors(home, name, expected):
    pt = os.path.join(home, f"{name}-pt")
    run(home, "export", f"{name}@1.0.0", "--format", "pt", "--out", pt)
    loaded = torch.load(os.path.join(pt, "prompt.pt"), weights_only=True)
    assert loaded.dtype == expected.dtype and torch.equal(loaded, expected), "pt export differs"
    st = os.path.join(home, f"{name}-st")
    run(home, "export", f"{name}@1.0.0", "--format", "safetensors", "--out", st)
    assert torch.equal(load_file(os.path.join(st, "prompt.safetensors"))["prompt"], expected), "safetensors export differs"
    print(f"{name}: torch.load(weights_only=True) and safetensors read the exports bit-exact {tuple(loaded.shape)}")


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found; run `cargo build` first")
    with tempfile.TemporaryDirectory() as home:
        expected = torch.load(FIXTURE, weights_only=True)
        publish(home, FIXTURE, "tiny-prompt", expected.shape[1], "tiny-bert")
        check_peft(home, expected)
        check_peft_seq2seq(home, expected)
        check_pt_and_safetensors(home, "tiny-prompt", expected)
        for name in ("tiny_f16", "tiny_bf16"):
            path = os.path.join(ROOT, "tests", "fixtures", "interop", f"{name}.pt")
            half = torch.load(path, weights_only=True)
            publish(home, path, name.replace("_", "-"), half.shape[1], "tiny-bert")
            check_pt_and_safetensors(home, name.replace("_", "-"), half)
        if os.path.exists(OFFICIAL):
            official = torch.load(OFFICIAL, weights_only=True, map_location="cpu")
            publish(home, OFFICIAL, "record-prompt", official.shape[1], "t5-base")
            check_pt_and_safetensors(home, "record-prompt", official)
        else:
            print("official ATTEMPT fixture not present; skipped")
    print("all checks passed")


if __name__ == "__main__":
    main()
