#!/usr/bin/python3
"""An independent ContAccum in plain PyTorch, for the C++ test
`PythonReference.*`.

Reads `<dir>/manifest.json` (config + raw little-endian tensors written by the
test), trains the same two-tower bag-of-embeddings model with ContAccum and
plain SGD, and writes `<dir>/result.json`: the loss of every step and the final
parameters. Written from the spec (shared/docs/contaccum-spec.md), not from the
C++ code: banks are Python lists, columns are concatenated explicitly.

False negatives are masked when `config["mask_false_negatives"]` is set: a
passage's identity here is its attended token ids (identical rows are one
passage), each query's positive is its example's, and every score of a row
against a column holding its positive's identity, other than its target, is
-inf.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"float64": np.float64, "int64": np.int64}


def load(directory, entry):
    data = np.fromfile(os.path.join(directory, entry["file"]), dtype=DTYPES[entry["dtype"]])
    return torch.from_numpy(data.reshape(entry["shape"]).copy())


def encode(params, prefix, ids, mask):
    emb = params[prefix + "embedding.weight"][ids]  # [B, T, E]
    m = mask.to(emb.dtype)
    pooled = (emb * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
    return pooled @ params[prefix + "projection.weight"].t() + params[prefix + "projection.bias"]


def main(directory):
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    cfg = manifest["config"]
    params = {name: load(directory, e).requires_grad_(True) for name, e in manifest["parameters"].items()}
    total, micro, memory = cfg["total_batch"], cfg["micro_batch"], cfg["memory_size"]
    h, tau, cosine, lr = cfg["hard_negatives"], cfg["temperature"], cfg["cosine"], cfg["lr"]
    g = 1 + h
    mask = cfg.get("mask_false_negatives", False)
    bank_q, bank_p, bank_keys = [], [], []  # per example: [d], [g, d], g identities; oldest first

    def score(a, b):
        if cosine:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return a @ b.t() / tau

    losses = []
    for batch in manifest["batches"]:
        qi, qm, pi, pm = (load(directory, batch[k]) for k in ("q_ids", "q_mask", "p_ids", "p_mask"))
        keys = [tuple(pi[k][pm[k] == 1].tolist()) for k in range(pi.shape[0])]
        for p in params.values():
            p.grad = None
        step_loss = 0.0
        for start in range(0, total, micro):
            q = encode(params, "query_encoder.", qi[start:start + micro], qm[start:start + micro])
            p = encode(params, "passage_encoder.", pi[start * g:(start + micro) * g],
                       pm[start * g:(start + micro) * g]).view(micro, g, -1)
            rows = [q] + ([torch.stack(bank_q)] if bank_q else [])
            banked = torch.stack(bank_p) if bank_p else None
            positives = [p[:, 0]] + ([banked[:, 0]] if banked is not None else [])
            negatives = [p[:, 1:].reshape(-1, p.shape[-1])]
            if banked is not None:
                negatives.append(banked[:, 1:].reshape(-1, p.shape[-1]))
            S = score(torch.cat(rows), torch.cat(positives + negatives))
            if mask:
                mine = [keys[(start + i) * g:(start + i + 1) * g] for i in range(micro)]
                examples = mine + bank_keys  # rows' order: current, then banked
                columns = ([e[0] for e in examples] + [k for e in mine for k in e[1:]] +
                           [k for e in bank_keys for k in e[1:]])
                for r, e in enumerate(examples):
                    for c, key in enumerate(columns):
                        if c != r and key == e[0]:
                            S[r, c] = float("-inf")
            loss = F.cross_entropy(S, torch.arange(S.shape[0]))
            (loss / (total // micro)).backward()
            step_loss += loss.item() / (total // micro)
            for i in range(micro):
                bank_q.append(q[i].detach().clone())
                bank_p.append(p[i].detach().clone())
                bank_keys.append(keys[(start + i) * g:(start + i + 1) * g])
            del bank_q[:max(0, len(bank_q) - memory)]
            del bank_p[:max(0, len(bank_p) - memory)]
            del bank_keys[:max(0, len(bank_keys) - memory)]
        with torch.no_grad():
            for p in params.values():
                p -= lr * p.grad
        losses.append(step_loss)

    result = {"losses": losses,
              "parameters": {k: v.detach().flatten().tolist() for k, v in params.items()}}
    with open(os.path.join(directory, "result.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
