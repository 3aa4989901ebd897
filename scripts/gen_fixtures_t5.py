#!/usr/bin/env python3
"""Builds the tiny random T5 fixtures the Rust tests compare against.

Writes tests/fixtures/t5/{v1_0,v1_1}/ with
  config.json            as on the Hub (v1.0: tied head, rescaled; v1.1: untied lm_head)
  model.safetensors      float32 weights, Hub key names
  reference.safetensors  inputs and reference outputs (computed in float64, stored as float32/int64)

Needs the dev venv (scripts/dev-venv.sh): torch, transformers, safetensors.
  /path/to/venv/bin/python scripts/gen_fixtures_t5.py [OUT_DIR]
Deterministic: fixed seeds; re-running reproduces the committed files.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import T5Config, T5ForConditionalGeneration

VOCAB = 64
PROMPT_LEN = 5
MAX_NEW_TOKENS = 6
CANDIDATES = [[5, 9, 1], [7, 1], [11, 12, 13, 1]]

VARIANTS = {
    # T5 v1.0 (t5-small style): ReLU FFN, tied head with d_model^-0.5 rescale.
    "v1_0": dict(feed_forward_proj="relu", tie=True, num_decoder_layers=2, d_ff=64),
    # T5 v1.1 / FLAN: gated-GELU (gelu_new) FFN, separate lm_head, no rescale,
    # and a decoder deeper than the encoder to exercise num_decoder_layers
    # (narrower FFN keeps the committed file under 200 KB).
    "v1_1": dict(feed_forward_proj="gated-gelu", tie=False, num_decoder_layers=3, d_ff=40),
}


def build(variant, seed):
    spec = VARIANTS[variant]
    cfg = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=6,  # inner dim 24 != d_model: catches transposed projections
        d_ff=spec["d_ff"],
        num_layers=2,
        num_decoder_layers=spec["num_decoder_layers"],
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=20,
        feed_forward_proj=spec["feed_forward_proj"],
        tie_word_embeddings=spec["tie"],
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        dropout_rate=0.0,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(cfg)
    with torch.no_grad():
        # Layer-norm weights start at 1.0; perturb them so a wrong weight use shows.
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            if "relative_attention_bias" in name:
                p.copy_(0.5 * torch.randn_like(p))
        # A random tied model mostly echoes its input token (the decoder starts
        # from 0, so greedy decoding would emit 0s); smaller embeddings let the
        # layers decide, so generation exercises more than one token.
        model.shared.weight.mul_(0.1)
        if not spec["tie"]:
            model.lm_head.weight = torch.nn.Parameter(0.3 * torch.randn(VOCAB, cfg.d_model))
    model.eval()
    return cfg, model, spec


def hub_config(cfg, spec):
    """config.json as the Hub has it for t5-small / flan-t5 (no transformers-5-only keys)."""
    d = cfg.to_dict()
    for k in ["scale_decoder_outputs", "transformers_version", "dtype", "torch_dtype"]:
        d.pop(k, None)
    d["tie_word_embeddings"] = spec["tie"]
    d["architectures"] = ["T5ForConditionalGeneration"]
    return d


def weights(model, spec):
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        if k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            continue  # aliases of shared.weight
        if k == "lm_head.weight" and spec["tie"]:
            continue
        out[k] = v.detach().to(torch.float32).contiguous().clone()
    return out


def shift_right(labels):
    dec = torch.zeros_like(labels)
    dec[:, 1:] = labels[:, :-1]
    dec[dec == -100] = 0
    return dec


def lm_logits(model, enc_hidden, enc_mask, dec_ids):
    out = model(encoder_outputs=(enc_hidden,), attention_mask=enc_mask, decoder_input_ids=dec_ids)
    return out.logits


def references(model, seed):
    g = torch.Generator().manual_seed(seed + 1000)
    input_ids = torch.randint(2, VOCAB, (2, 12), generator=g)
    attention_mask = torch.ones(2, 12, dtype=torch.long)
    input_ids[1, 8:] = 0
    attention_mask[1, 8:] = 0
    labels = torch.randint(2, VOCAB, (2, 5), generator=g)
    labels[:, -1] = 1
    labels[1, 3:] = -100
    prompt = torch.randn(PROMPT_LEN, model.config.d_model, generator=g, dtype=torch.float64)

    ref = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    m = model.double()
    with torch.no_grad():
        enc = m.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        dec_ids = shift_right(labels)
        logits = lm_logits(m, enc, attention_mask, dec_ids)
        loss = m(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        gen = m.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            num_beams=1,
            # transformers 5 sizes its cache by num_layers: wrong when the decoder is deeper.
            use_cache=False,
        )
        # Rank classification: sum of label-token log-probabilities per candidate.
        scores = torch.zeros(2, len(CANDIDATES), dtype=torch.float64)
        for j, cand in enumerate(CANDIDATES):
            lab = torch.tensor([cand, cand])
            lp = torch.log_softmax(lm_logits(m, enc, attention_mask, shift_right(lab)), -1)
            scores[:, j] = lp.gather(-1, lab.unsqueeze(-1)).squeeze(-1).sum(-1)
    ref.update(
        encoder_hidden=enc,
        decoder_input_ids=dec_ids,
        decoder_logits=logits,
        loss=loss.reshape(1),
        generated=gen,
        candidate_scores=scores,
    )

    # Gradient of the loss w.r.t. the encoder input embeddings with a prepended prompt.
    tok_embeds = m.shared(input_ids).detach()
    embeds = torch.cat([prompt.unsqueeze(0).expand(2, -1, -1), tok_embeds], 1)
    embeds = embeds.detach().requires_grad_(True)
    mask = torch.cat([torch.ones(2, PROMPT_LEN, dtype=torch.long), attention_mask], 1)
    out = m(inputs_embeds=embeds, attention_mask=mask, labels=labels)
    out.loss.backward()
    ref.update(
        prompt=prompt,
        prompt_mask=mask,
        prompt_encoder_hidden=out.encoder_last_hidden_state.detach(),
        prompt_loss=out.loss.detach().reshape(1),
        prompt_embeds_grad=embeds.grad,
        prompt_grad=embeds.grad[:, :PROMPT_LEN].sum(0),
    )
    model.float()
    return {
        k: (v.to(torch.float32) if v.is_floating_point() else v.to(torch.int64)).contiguous()
        for k, v in ref.items()
    }


def check_roundtrip(out_dir, ref):
    """Reload the written files through transformers: they must mean what we computed."""
    m = T5ForConditionalGeneration.from_pretrained(out_dir).double().eval()
    with torch.no_grad():
        enc = m.encoder(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).last_hidden_state
        logits = lm_logits(m, enc, ref["attention_mask"], ref["decoder_input_ids"])
    err = (logits.float() - ref["decoder_logits"]).abs().max().item()
    assert err < 1e-5, f"{out_dir}: reloaded model differs from reference by {err}"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "fixtures", "t5"
    )
    for i, variant in enumerate(sorted(VARIANTS)):
        cfg, model, spec = build(variant, seed=1234 + i)
        out_dir = os.path.join(root, variant)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(hub_config(cfg, spec), f, indent=2, sort_keys=True)
            f.write("\n")
        save_file(weights(model, spec), os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        ref = references(model, seed=1234 + i)
        save_file(ref, os.path.join(out_dir, "reference.safetensors"))
        check_roundtrip(out_dir, ref)
        print(f"{out_dir}: generated {ref['generated'].tolist()} loss {ref['loss'].item():.6f}")


if __name__ == "__main__":
    main()
