#!/usr/bin/python3
"""Python reference of the benchmarked strategies, for per-step time ratios.

Written the way the published Python implementations are (DPR, the GradCache
library, the ContAccum authors' code): plain PyTorch modules, banks kept as
tensors that are concatenated with the current micro-batch every time, the
score matrix built whole, GradCache's random-state replay and surrogate
backward. Same models (bag of embeddings; BERT-style transformer with CLS
pooling), same batches (read from what `contaccum_bench_strategies prepare`
wrote), same AdamW + clipping, same thread count, same interleaving as the
C++ `time` command. Prints one JSON object per configuration.

    /usr/bin/python3 bench/strategies/reference.py --batches DIR --encoder boe|transformer [...]
"""
import argparse
import json
import math
import os
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------ models
class BagOfEmbeddings(nn.Module):
    def __init__(self, vocab, embedding_dim, dim, dropout=0.1):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(embedding_dim, dim)

    def forward(self, ids, mask):
        m = mask.to(torch.float32).unsqueeze(-1)
        pooled = (self.embedding(ids) * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.projection(self.dropout(pooled))


class BertLayer(nn.Module):
    def __init__(self, hidden, heads, intermediate, dropout=0.1):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.attention_out, self.attention_norm = nn.Linear(hidden, hidden), nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate, self.out = nn.Linear(hidden, intermediate), nn.Linear(intermediate, hidden)
        self.out_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, additive_mask):
        b, t, h = x.shape

        def split(y):
            return y.view(b, t, self.heads, h // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(h // self.heads) + additive_mask
        context = (self.dropout(scores.softmax(-1)) @ v).transpose(1, 2).reshape(b, t, h)
        x = self.attention_norm(self.dropout(self.attention_out(context)) + x)
        return self.out_norm(self.dropout(self.out(F.gelu(self.intermediate(x)))) + x)


class Bert(nn.Module):
    def __init__(self, vocab, hidden, layers, heads, intermediate, max_positions, dropout=0.1):
        super().__init__()
        self.words = nn.Embedding(vocab, hidden, padding_idx=0)
        self.positions = nn.Embedding(max_positions, hidden)
        self.types = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(BertLayer(hidden, heads, intermediate, dropout) for _ in range(layers))

    def forward(self, ids, mask):
        t = ids.shape[1]
        x = self.words(ids) + self.types(torch.zeros_like(ids)) + self.positions(torch.arange(t).unsqueeze(0))
        x = self.dropout(self.norm(x))
        additive = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, additive)
        return x[:, 0]  # CLS


def make_tower(args, vocab):
    if args.encoder == "boe":
        return BagOfEmbeddings(vocab, args.embedding_dim, args.dim)
    return Bert(vocab, args.hidden, args.layers, args.heads, args.intermediate,
                max(args.query_length, args.passage_length))


# ------------------------------------------------------------------ strategies
class RandContext:
    """GradCache's random-state capture, replayed for the second forward."""

    def __init__(self):
        self.state = torch.get_rng_state()

    def __enter__(self):
        self.saved = torch.get_rng_state()
        torch.set_rng_state(self.state)

    def __exit__(self, *exc):
        torch.set_rng_state(self.saved)


def scores_and_loss(q, p_groups, bank_q=None, bank_p=None):
    """ContAccum's layout: rows [q; bank q], columns [pos; bank pos; negs; bank negs]."""
    pos, neg = p_groups[:, 0], p_groups[:, 1:].reshape(-1, p_groups.shape[-1])
    if bank_q is not None and bank_q.shape[0] > 0:
        rows = torch.cat([q, bank_q])
        columns = torch.cat([pos, bank_p[:, 0], neg, bank_p[:, 1:].reshape(-1, bank_p.shape[-1])])
    else:
        rows, columns = q, torch.cat([pos, neg])
    scores = rows @ columns.t()
    return F.cross_entropy(scores, torch.arange(rows.shape[0]))


class Runner:
    def __init__(self, strategy, total, micro, memory, args, vocab):
        torch.manual_seed(0)
        self.strategy, self.total, self.micro, self.memory = strategy, total, micro, memory
        self.q_tower, self.p_tower = make_tower(args, vocab), make_tower(args, vocab)
        self.params = list(self.q_tower.parameters()) + list(self.p_tower.parameters())
        decay = [p for p in self.params if p.dim() >= 2]
        no_decay = [p for p in self.params if p.dim() < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
        self.bank_q = self.bank_p = None
        self.times = []

    def encode(self, b, start, end):
        g = b["g"]
        q = self.q_tower(b["q_ids"][start:end], b["q_mask"][start:end])
        p = self.p_tower(b["p_ids"][start * g:end * g], b["p_mask"][start * g:end * g]).view(end - start, g, -1)
        return q, p

    def enqueue(self, q, p):
        if self.memory == 0:
            return
        q, p = q.detach(), p.detach()
        self.bank_q = q[-self.memory:] if self.bank_q is None else torch.cat([self.bank_q, q])[-self.memory:]
        self.bank_p = p[-self.memory:] if self.bank_p is None else torch.cat([self.bank_p, p])[-self.memory:]

    def step(self, b):
        self.optimizer.zero_grad()
        total, micro = self.total, self.micro
        if self.strategy == "full_batch":
            q, p = self.encode(b, 0, total)
            scores_and_loss(q, p).backward()
        elif self.strategy in ("grad_accum", "contaccum"):
            for s in range(0, total, micro):
                q, p = self.encode(b, s, s + micro)
                loss = scores_and_loss(q, p, self.bank_q, self.bank_p)
                (loss / (total // micro)).backward()
                self.enqueue(q, p)
        else:  # grad_cache, contaccum_grad_cache
            states, qs, ps = [], [], []
            with torch.no_grad():
                for s in range(0, total, micro):
                    states.append(RandContext())
                    q, p = self.encode(b, s, s + micro)
                    qs.append(q)
                    ps.append(p)
            q = torch.cat(qs).requires_grad_()
            p = torch.cat(ps).requires_grad_()
            scores_and_loss(q, p, self.bank_q, self.bank_p).backward()
            for i, s in enumerate(range(0, total, micro)):
                with states[i]:
                    q_k, p_k = self.encode(b, s, s + micro)
                surrogate = torch.dot(q_k.flatten(), q.grad[s:s + micro].flatten()) + \
                    torch.dot(p_k.flatten(), p.grad[s:s + micro].flatten())
                surrogate.backward()
            self.enqueue(q, p)
        torch.nn.utils.clip_grad_norm_(self.params, 2.0)
        self.optimizer.step()


def grid(total, micros, memories, strategies):
    out = []
    if "full_batch" in strategies:
        out.append(("full_batch", total, total, 0))
    for micro in micros:
        if micro >= total or total % micro:
            continue
        for s in ("grad_accum", "grad_cache"):
            if s in strategies:
                out.append((s, total, micro, 0))
        for mult in memories:
            for s in ("contaccum", "contaccum_grad_cache"):
                if s in strategies:
                    out.append((s, total, micro, mult * total))
    return out


def load_batches(directory, manifest, total, args, count):
    h, lq, lp = manifest["hard_negatives"], manifest["query_length"], manifest["passage_length"]
    out = []
    for stem in manifest["batches"][str(total)][:count]:
        def read(name, rows, width, keep):
            data = np.fromfile(os.path.join(directory, f"{stem}_{name}.bin"), dtype=np.int64)
            return torch.from_numpy(data.reshape(rows, width)[:, :keep].copy())
        out.append({"g": 1 + h,
                    "q_ids": read("q_ids", total, lq, args.query_length),
                    "q_mask": read("q_mask", total, lq, args.query_length),
                    "p_ids": read("p_ids", total * (1 + h), lp, args.passage_length),
                    "p_mask": read("p_mask", total * (1 + h), lp, args.passage_length)})
    if len(out) != count:
        raise SystemExit(f"need {count} batches of {total}, prepared {len(out)}")
    return out


def ints(text):
    return [int(x) for x in text.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", required=True)
    ap.add_argument("--encoder", choices=["boe", "transformer"], default="boe")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--embedding-dim", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--query-length", type=int, default=32)
    ap.add_argument("--passage-length", type=int, default=128)
    ap.add_argument("--total-batch", default="64,128,256,512")
    ap.add_argument("--micro-batch", default="8,32")
    ap.add_argument("--memory", default="0,1,8", help="multiples of the total batch")
    ap.add_argument("--strategies", default="full_batch,grad_accum,grad_cache,contaccum,contaccum_grad_cache")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with open(os.path.join(args.batches, "manifest.json")) as f:
        manifest = json.load(f)
    strategies = args.strategies.split(",")
    for total in ints(args.total_batch):
        batches = load_batches(args.batches, manifest, total, args, args.warmup + args.steps)
        runners = [Runner(*c, args, manifest["vocab_size"])
                   for c in grid(total, ints(args.micro_batch), ints(args.memory), strategies)]
        for r in range(args.warmup + args.steps):
            for i in range(len(runners)):
                runner = runners[(i + r) % len(runners)]  # rotated, as in the C++ bench
                start = time.perf_counter()
                runner.step(batches[r])
                if r >= args.warmup:
                    runner.times.append(time.perf_counter() - start)
        for runner in runners:
            print(json.dumps({"impl": "python", "encoder": args.encoder, "strategy": runner.strategy,
                              "total_batch": runner.total, "micro_batch": runner.micro,
                              "memory_size": runner.memory,
                              "ms_per_step": 1e3 * statistics.median(runner.times),
                              "ms_steps": [1e3 * t for t in runner.times],
                              "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
