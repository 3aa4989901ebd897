"""The ATTEMPT training step of benches/attempt_step.rs in PyTorch: frozen
MiniLM (transformers BertModel), batch 16 x 64 tokens, 4 frozen source
prompts of 100 rows, trainable target prompt + attention G (max-pool, d->100
SiLU ->d, LayerNorm, softmax over sources and target, T = d*e) + mean-pool
linear head, AdamW. Prints one JSON line: mean step time and peak RSS.

usage: /work/venv-dev/bin/python scripts/bench_attempt_torch.py MODEL_DIR [STEPS]
"""
import json
import math
import resource
import sys
import time

import torch
from transformers import BertModel

B, L, M, T_SRC = 16, 64, 100, 4
torch.manual_seed(0)
torch.set_num_threads(torch.get_num_threads())

model_dir = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
bert = BertModel.from_pretrained(model_dir).eval()
for p in bert.parameters():
    p.requires_grad_(False)
d = bert.config.hidden_size

sources = torch.randn(T_SRC, M, d) * 0.5
target = torch.nn.Parameter(sources[0].clone())
down = torch.nn.Linear(d, 100, bias=False)
up = torch.nn.Linear(100, d, bias=False)
norm = torch.nn.LayerNorm(d)
head = torch.nn.Linear(d, 2)
params = [target, *down.parameters(), *up.parameters(), *norm.parameters(), *head.parameters()]
opt = torch.optim.AdamW([{"params": [target], "lr": 0.3}, {"params": params[1:], "lr": 5e-3}], weight_decay=1e-5)
temperature = d * math.e


def step(ids, labels):
    mask = torch.ones(B, L)
    emb = bert.embeddings.word_embeddings(ids)
    h = norm(up(torch.nn.functional.silu(down(emb.max(dim=1).values))))  # [B, d]
    prompts = torch.cat([sources, target[None]], dim=0)  # [t+1, M, d]
    keys = prompts.max(dim=1).values  # [t+1, d]
    a = torch.softmax(h @ keys.T / temperature, dim=-1)  # [B, t+1]
    inst = target[None] + torch.einsum("bt,tmd->bmd", a, prompts)  # the target is in the mixture too
    inputs = torch.cat([inst, emb], dim=1)
    full_mask = torch.cat([torch.ones(B, M), mask], dim=1)
    out = bert(inputs_embeds=inputs, attention_mask=full_mask).last_hidden_state
    pooled = (out * full_mask[..., None]).sum(1) / full_mask.sum(1, keepdim=True)
    loss = torch.nn.functional.cross_entropy(head(pooled), labels)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.item()


times = []
for i in range(steps + 1):
    ids = torch.randint(1000, 21000, (B, L))
    labels = torch.randint(0, 2, (B,))
    t0 = time.perf_counter()
    step(ids, labels)
    if i > 0:  # the first step warms up
        times.append(time.perf_counter() - t0)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"impl": "torch", "steps": len(times), "mean_step_ms": round(1000 * sum(times) / len(times), 1),
                  "peak_rss_mb": round(peak_mb), "threads": torch.get_num_threads()}))
