"""Reference for contaccum's fuse_rankings (RRF and min-max linear fusion),
written from the definitions in include/contaccum/eval/fusion.h.

Usage: fusion_reference.py IN.json OUT.json
"""
import json
import sys

data = json.load(open(sys.argv[1]))


def fuse(method, w, dense_rows, dense_scores, bm25_rows, bm25_scores, c=60.0, k=12):
    out_rows, out_scores = [], []
    for q in range(len(dense_rows)):
        lists = [
            (w, [(int(d), s) for d, s in zip(dense_rows[q], dense_scores[q])]),
            (1 - w, [(int(d), s) for d, s in zip(bm25_rows[q], bm25_scores[q]) if s > 0]),
        ]
        fused = {}
        for weight, items in lists:
            if not items:
                continue
            lo, hi = min(s for _, s in items), max(s for _, s in items)
            for rank, (doc, score) in enumerate(items, start=1):
                part = 1.0 / (c + rank) if method == "rrf" else ((score - lo) / (hi - lo) if hi > lo else 1.0)
                fused[doc] = fused.get(doc, 0.0) + weight * part
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        out_rows.append([d for d, _ in ranked])
        out_scores.append([s for _, s in ranked])
    return {"rows": out_rows, "scores": out_scores}


out = {}
for method in ("rrf", "linear"):
    for w in (0.3, 0.5):
        out[f"{method}_{w}"] = fuse(method, w, data["dense_rows"], data["dense_scores"], data["bm25_rows"],
                                    data["bm25_scores"])
json.dump(out, open(sys.argv[2], "w"))
