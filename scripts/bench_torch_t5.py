#!/usr/bin/env python3
"""PyTorch reference for benches/t5.rs: the same T5 computation, eager mode.

A random-weight T5 with the given shapes (default T5-small), frozen; a soft
prompt [P, d] is prepended to the token embeddings of a batch; the decoder is
teacher-forced on a short target. Times
  forward           encoder + decoder + loss under torch.no_grad()
  forward+backward  the same with autograd, backward to the prompt only
and prints one JSON line: {"forward_ms", "train_ms", "peak_rss_mb", ...}.

  python scripts/bench_torch_t5.py --threads 2 --steps 5
"""
import argparse
import json
import time

import torch
from transformers import T5Config, T5ForConditionalGeneration


def peak_rss_mb():
    """VmHWM of this process. (getrusage's ru_maxrss survives exec, so under a
    parent it reports the parent's peak when that is larger.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=100)
    ap.add_argument("--text", type=int, default=128)
    ap.add_argument("--target", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--d-ff", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32128)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=a.vocab, d_model=a.d_model, d_kv=a.d_model // a.heads, d_ff=a.d_ff,
        num_layers=a.layers, num_heads=a.heads, feed_forward_proj="relu",
        tie_word_embeddings=True, dropout_rate=0.0, decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(cfg).eval()
    model.requires_grad_(False)

    ids = torch.randint(2, a.vocab, (a.batch, a.text))
    labels = torch.randint(2, a.vocab, (a.batch, a.target))
    mask = torch.ones(a.batch, a.prompt + a.text, dtype=torch.long)
    prompt = torch.nn.Parameter(0.5 * torch.randn(a.prompt, a.d_model))

    def loss_fn():
        tok = model.shared(ids)
        embeds = torch.cat([prompt.unsqueeze(0).expand(a.batch, -1, -1), tok], 1)
        return model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    def forward():
        with torch.no_grad():
            return loss_fn().item()

    def train():
        prompt.grad = None
        loss = loss_fn()
        loss.backward()
        assert prompt.grad is not None
        return loss.item()

    def timed(fn):
        """(wall ms, process CPU ms) per step after one warm-up step."""
        fn()  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.steps):
            fn()
        n = a.steps
        return (time.perf_counter() - t0) / n * 1e3, (time.process_time() - c0) / n * 1e3

    fwd, fwd_cpu = timed(forward)
    trn, trn_cpu = timed(train)
    peak_mb = peak_rss_mb()
    print(json.dumps({
        "forward_ms": fwd, "train_ms": trn, "peak_rss_mb": peak_mb,
        "forward_cpu_ms": fwd_cpu, "train_cpu_ms": trn_cpu,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
