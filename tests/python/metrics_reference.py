#!/usr/bin/env python3
"""Independent retrieval metrics for tests/eval/metrics_test.cpp.

Usage: metrics_reference.py DIR. Reads DIR/cases.json, a list of cases
{"ranking": [[corpus rows, best first], ...], "query_rows": [...],
 "qrels": [[query, passage, score], ...],
 "options": {"top_k": [...], "recall_k": [...], "mrr_k": k, "ndcg_k": k, "map_k": k}}
and writes DIR/result.json: per case {"queries": n, "<metric>": value, ...}.

Definitions (written from trec_eval's and DPR's, not from the C++ code):
relevant = judged with score > 0 (a pair judged twice keeps its highest
score); a passage listed twice in a ranking counts at its first position;
Top@k = any relevant in the first k; Recall@k; MRR@k; nDCG@k with gain =
score and discount log2(rank + 1), ideal from all relevant passages; MAP@k =
sum of precision at each relevant hit within k / number relevant. Queries
without relevant passages are skipped.
"""
import json
import math
import os
import sys


def evaluate(case):
    opts = case["options"]
    judged = {}
    for q, p, s in case["qrels"]:
        judged.setdefault(q, {})
        judged[q][p] = max(s, judged[q].get(p, s))
    sums = {}
    names = ([f"top@{k}" for k in opts["top_k"]] + [f"recall@{k}" for k in opts["recall_k"]] +
             [f"mrr@{opts['mrr_k']}", f"ndcg@{opts['ndcg_k']}", f"map@{opts['map_k']}"])
    for n in names:
        sums[n] = 0.0
    count = 0
    for row, ranked in zip(case["query_rows"], case["ranking"]):
        rel = {p: s for p, s in judged.get(row, {}).items() if s > 0}
        if not rel:
            continue
        count += 1
        # Drop repeats, keeping first positions.
        seen, ranked_once = set(), []
        for pos, p in enumerate(ranked):
            ranked_once.append(p if p not in seen else None)
            seen.add(p)
        is_rel = [p is not None and p in rel for p in ranked_once]
        for k in opts["top_k"]:
            sums[f"top@{k}"] += 1.0 if any(is_rel[:k]) else 0.0
        for k in opts["recall_k"]:
            sums[f"recall@{k}"] += sum(is_rel[:k]) / len(rel)
        k = opts["mrr_k"]
        first = next((i for i, r in enumerate(is_rel[:k]) if r), None)
        sums[f"mrr@{k}"] += 0.0 if first is None else 1.0 / (first + 1)
        k = opts["ndcg_k"]
        dcg = sum(rel[p] / math.log2(i + 2) for i, p in enumerate(ranked_once[:k]) if p is not None and p in rel)
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        sums[f"ndcg@{k}"] += dcg / idcg
        k = opts["map_k"]
        hits, ap = 0, 0.0
        for i, r in enumerate(is_rel[:k]):
            if r:
                hits += 1
                ap += hits / (i + 1)
        sums[f"map@{k}"] += ap / len(rel)
    out = {"queries": count}
    for n in names:
        out[n] = sums[n] / count if count else float("nan")
    return out


def main(d):
    with open(os.path.join(d, "cases.json")) as f:
        cases = json.load(f)
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump([evaluate(c) for c in cases], f)


if __name__ == "__main__":
    main(sys.argv[1])
