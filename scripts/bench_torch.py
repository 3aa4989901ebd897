#!/usr/bin/env python3
"""PyTorch side of benches/backbone.rs: the same computation, same shapes.

A frozen BERT encoder (transformers BertModel, random weights, parameters
with requires_grad=False) with a soft prompt prepended to the word
embeddings; times the forward pass (no_grad) and forward+backward to the
prompt of loss = sum(hidden * R). Prints one JSON line.

    python scripts/bench_torch.py --arch bert --batch 16 --prompt 100 --text 128 --threads 2
"""
import argparse
import json
import resource
import statistics
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="bert", choices=["bert"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=100)
    ap.add_argument("--text", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    args = ap.parse_args()

    import torch
    from transformers import BertConfig, BertModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # all-MiniLM-L6-v2's shapes.
    cfg = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
        intermediate_size=1536, max_position_embeddings=512, hidden_act="gelu",
        attn_implementation=args.attn,
    )
    model = BertModel(cfg, add_pooling_layer=False).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    d = cfg.hidden_size
    b, P, L = args.batch, args.prompt, args.text
    ids = torch.randint(0, cfg.vocab_size, (b, L))
    mask = torch.ones(b, P + L, dtype=torch.long)
    prompt = torch.nn.Parameter(0.02 * torch.randn(P, d))
    weights = torch.randn(b, P + L, d)

    def inputs():
        words = model.embeddings.word_embeddings(ids)
        return torch.cat([prompt.unsqueeze(0).expand(b, -1, -1), words], dim=1)

    def fwd():
        with torch.no_grad():
            return model(inputs_embeds=inputs(), attention_mask=mask).last_hidden_state

    def fwd_bwd():
        prompt.grad = None
        out = model(inputs_embeds=inputs(), attention_mask=mask).last_hidden_state
        (out * weights).sum().backward()
        assert prompt.grad is not None
        return prompt.grad

    def timeit(f):
        for _ in range(args.warmup):
            f()
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            f()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    res = {
        "impl": f"pytorch {torch.__version__} ({args.attn} attention)",
        "forward_ms": timeit(fwd),
        "forward_backward_ms": timeit(fwd_bwd),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
