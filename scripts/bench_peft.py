"""Hugging Face PEFT prompt tuning, timed: the PyTorch side of
scripts/bench_peft.sh (which runs `attempt-pkg train --method pt` with the
same settings beside it).

Frozen all-MiniLM-L6-v2 (transformers), a PEFT PromptTuningConfig with
`--virtual-tokens` random virtual tokens, a linear head on the mean-pooled
hidden states (as attempt-pkg's), AdamW with the prompt at `--lr` and the
head at `--lr-head`, linear warm-up over 6 % of the steps then linear decay,
gradient clipping at 1.0, batches of `--batch-size` shuffled training
examples padded to the longest in the batch (as attempt-pkg) and cut at
`--max-length` tokens (`--group-by-length`: batches of similar length, as
transformers' LengthGroupedSampler). The encoder runs in eval mode (no dropout), as
attempt-pkg's frozen encoder does. Prints one JSON line: steps, mean step
seconds, wall seconds (model load included), peak RSS.

usage: python scripts/bench_peft.py MODEL_DIR DATA_DIR --task rte --steps 30
"""
import argparse
import csv
import json
import os
import random
import resource
import sys
import time

import torch
from peft import PromptTuningConfig, TaskType, get_peft_model
from transformers import AutoTokenizer, BertModel

# GLUE TSVs have bare quotes (MRPC); read them as plain tab-separated text.
csv.field_size_limit(sys.maxsize)
TASKS = {  # task: (file, text columns, label column, labels)
    "rte": ("RTE/train.tsv", ("sentence1", "sentence2"), "label", ["entailment", "not_entailment"]),
    "mrpc": ("MRPC/train.tsv", ("#1 String", "#2 String"), "Quality", ["0", "1"]),
    "sst2": ("SST-2/train.tsv", ("sentence",), "label", ["0", "1"]),
}


def load(data_dir, task):
    path, columns, label, labels = TASKS[task]
    with open(os.path.join(data_dir, path), encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [([r[c] for c in columns], labels.index(r[label])) for r in rows]


class PooledClassifier(torch.nn.Module):
    """BertModel + mean pooling over real tokens (virtual ones included) + a linear head."""

    def __init__(self, bert, labels):
        super().__init__()
        self.bert = bert
        self.config = bert.config
        self.head = torch.nn.Linear(bert.config.hidden_size, labels)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, **_):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds)
        mask = attention_mask[..., None].to(out.last_hidden_state.dtype)
        pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
        logits = self.head(pooled)
        return torch.nn.functional.cross_entropy(logits, labels)

    @property
    def device(self):  # PEFT asks the wrapped model for these
        return self.bert.device

    @property
    def dtype(self):
        return self.bert.dtype


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("data_dir")
    p.add_argument("--task", default="rte", choices=sorted(TASKS))
    p.add_argument("--steps", type=int, default=30, help="0: one epoch (every example once)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--virtual-tokens", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--lr-head", type=float, default=5e-3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--group-by-length", action="store_true")
    p.add_argument("--bf16", action="store_true",
                   help="forward under torch.autocast(bfloat16): matrix products in bf16, as PyTorch's mixed precision")
    a = p.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    tokenizer = AutoTokenizer.from_pretrained(a.model_dir)
    examples = load(a.data_dir, a.task)
    model = PooledClassifier(BertModel.from_pretrained(a.model_dir), len(TASKS[a.task][3]))
    config = PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=a.virtual_tokens)
    model = get_peft_model(model, config)
    for p_ in model.base_model.head.parameters():
        p_.requires_grad_(True)
    model.eval()  # frozen encoder: no dropout
    prompt = [p_ for n, p_ in model.named_parameters() if p_.requires_grad and "prompt_encoder" in n]
    head = list(model.base_model.head.parameters())
    opt = torch.optim.AdamW([{"params": prompt, "lr": a.lr}, {"params": head, "lr": a.lr_head}], weight_decay=1e-5)
    order = list(range(len(examples)))
    random.shuffle(order)
    batches = [order[i:i + a.batch_size] for i in range(0, len(order), a.batch_size)]
    if a.group_by_length:
        # As transformers' LengthGroupedSampler (and attempt-pkg's
        # --group-by-length): megabatches of 50 batches sorted by length.
        length = {i: len(tokenizer(*examples[i][0], truncation=True, max_length=a.max_length)["input_ids"])
                  for i in order}
        mega = 50 * a.batch_size
        grouped = []
        for m in range(0, len(order), mega):
            chunk = sorted(order[m:m + mega], key=lambda i: -length[i])
            grouped += [chunk[i:i + a.batch_size] for i in range(0, len(chunk), a.batch_size)]
        random.shuffle(grouped)
        batches = grouped
    if a.steps == 0:
        a.steps = len(batches)
    warmup = max(1, int(0.06 * a.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (a.steps - s) / max(1, a.steps - warmup))
    )
    times = []
    for step in range(a.steps):
        t0 = time.perf_counter()
        batch = [examples[i] for i in batches[step % len(batches)]]
        texts = list(zip(*[b[0] for b in batch]))
        enc = tokenizer(*texts, truncation=True, max_length=a.max_length, padding="longest", return_tensors="pt")
        labels = torch.tensor([b[1] for b in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prompt + head, 1.0)
        opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"steps": a.steps, "mean_step_s": sum(times) / len(times), "wall_s": time.perf_counter() - started,
                      "peak_rss_mb": rss_mb, "torch": torch.__version__, "threads": a.threads,
                      "trainable": sum(p_.numel() for p_ in prompt + head), "final_loss": loss.item(),
                      "precision": "bf16" if a.bf16 else "fp32"}))


if __name__ == "__main__":
    main()
