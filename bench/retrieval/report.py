"""Writes the measured sections of docs/RETRIEVAL.md from bench/retrieval/run.sh's output.

Each section lies between `<!-- begin NAME -->` and `<!-- end NAME -->` in the
document (NAME: quality, index, scale); only those lines are replaced, and a
part that was not measured keeps its previous text.

Usage: python3 bench/retrieval/report.py bench/retrieval docs/RETRIEVAL.md
"""
import json
import os
import re
import sys


def quality(path):
    q = json.load(open(path))
    train = q["train"]
    cols = [("dense", q["dense"]), ("BM25", q["bm25"]), ("hybrid RRF", q["hybrid-rrf"]),
            ("hybrid linear", q["hybrid-linear"])]
    lines = [f"debpkg dev ({q['dense']['queries']:,} queries); the main job's retriever "
             f"(`examples/main_job/config.yaml`) trained on debpkg's training queries: {train['steps']:,} steps "
             f"in {train['train_seconds'] / 60:.1f} min; hybrid weights tuned on the first 1,000 training queries "
             f"(RRF {q['hybrid-rrf']['weight']:.2f}, linear {q['hybrid-linear']['weight']:.2f}).", "",
             "| metric | " + " | ".join(name for name, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for key in ["top@1", "top@5", "top@20", "top@100", "mrr@10", "ndcg@10"]:
        lines.append(f"| {key} | " + " | ".join(f"{c[key]:.3f}" for _, c in cols) + " |")
    return lines


def index(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    first = rows[0]
    exact_qps = first["queries_per_second"]
    lines = [f"{first['passages']:,} passages of width {first['dim']}, {first['queries']:,} dev queries searched "
             f"at once for the top 100, {first['threads']} thread; queries/s is the best of 3 runs. Exact search "
             f"ran at {first['gflops']:.0f} GFLOP/s (2 x queries x passages x width = "
             f"{2 * first['queries'] * first['passages'] * first['dim'] / 1e9:.0f} GFLOP per run).", "",
             "| index | search setting | build s | memory MB | queries/s | vs exact | recall@10 | recall@100 "
             "| MRR@10 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        build = "–" if r["type"] == "exact" else f"{r['build_seconds']:.1f}"
        lines.append(f"| {r['type']} | {r['setting'] or '–'} | {build} | {r['memory_bytes'] / 2**20:.1f} | "
                     f"{r['queries_per_second']:,.0f} | {r['queries_per_second'] / exact_qps:.2f}x | "
                     f"{r['recall@10']:.3f} | {r['recall@100']:.3f} | {r['metrics']['mrr@10']:.3f} |")
    return lines


def scale(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    lines = ["| passages | corpus file MB | `eval` wall s | passages/s | `eval` peak RSS MB | "
             "`encode` wall s | `encode` peak RSS MB | every embedding, if held, MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        held = r["passages"] * r["dim"] * 4 / 2**20
        lines.append(f"| {r['passages']:,} | {r['corpus_mb']:.0f} | {r['wall_seconds']:.0f} | "
                     f"{r['passages'] / r['wall_seconds']:,.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['encode_seconds']:.0f} | {r['encode_peak_rss_mb']:.0f} | {held:.0f} |")
    return lines


def main():
    out_dir, doc = sys.argv[1:3]
    text = open(doc).read()
    for name, fn, file in [("quality", quality, "quality.json"), ("index", index, "index.jsonl"),
                           ("scale", scale, "scale.jsonl")]:
        path = os.path.join(out_dir, file)
        if not os.path.exists(path):
            continue
        body = "\n".join(fn(path))
        pattern = re.compile(rf"(<!-- begin {name} -->\n).*?(<!-- end {name} -->)", re.S)
        if not pattern.search(text):
            sys.exit(f"{doc}: no <!-- begin {name} --> ... <!-- end {name} --> section")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    open(doc, "w").write(text)


if __name__ == "__main__":
    main()
