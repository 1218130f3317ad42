#!/usr/bin/python3
"""Turns the raw output of bench/run_strategies.sh into bench/results.jsonl
and docs/BENCHMARKS.md (tables, targets, command, machine)."""
import argparse
import json
import os
import platform
import statistics
import subprocess

STRATEGY_NAMES = {
    "full_batch": "full batch (DPR)",
    "grad_accum": "GradAccum",
    "grad_cache": "GradCache",
    "contaccum": "ContAccum",
    "contaccum_grad_cache": "ContAccum over GradCache",
}
ORDER = list(STRATEGY_NAMES)


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def key(r):
    return (r["encoder"], r["strategy"], r["total_batch"], r["micro_batch"], r["memory_size"])


def label(strategy, micro, memory, total):
    name = STRATEGY_NAMES[strategy]
    if strategy == "full_batch":
        return name
    mem = ""
    if strategy.startswith("contaccum"):
        mem = ", memory " + ("0" if memory == 0 else "N" if memory == total else f"{memory // total}N")
    return f"{name}, micro {micro}{mem}"


def machine():
    def cpuinfo(field):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
        return "?"

    with open("/proc/cpuinfo") as f:
        logical = sum(1 for line in f if line.startswith("processor"))
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 1048576

    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "?"

    libtorch = run(["dpkg-query", "-W", "-f=${Version}", "libtorch-dev"]) or "?"
    pytorch = run(["dpkg-query", "-W", "-f=${Version}", "python3-torch"]) or "?"
    blas = run(["update-alternatives", "--query", "libblas.so.3-x86_64-linux-gnu"])
    blas = next((line.split(":", 1)[1].strip() for line in blas.splitlines() if line.startswith("Value:")), "?")
    return (f"{cpuinfo('model name')}, {logical} logical CPUs, {mem_gib:.1f} GiB; {platform.system()} "
            f"{platform.release()}; LibTorch {libtorch} (Debian), python3-torch {pytorch}; BLAS {blas}")


def fmt_ms(v):
    return "–" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")


def fmt_ratio(v):
    return "–" if v is None else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--markdown", required=True)
    args = ap.parse_args()

    cpp = read_jsonl(os.path.join(args.work, "time-cpp.jsonl"))
    py = read_jsonl(os.path.join(args.work, "time-python.jsonl"))
    rss = read_jsonl(os.path.join(args.work, "rss.jsonl"))
    with open(os.path.join(args.work, "batches", "manifest.json")) as f:
        manifest = json.load(f)
    time_of = {("cpp",) + key(r): r for r in cpp}
    time_of.update({("python",) + key(r): r for r in py})
    rss_of = {key(r): r for r in rss}
    shapes = {r["encoder"]: r["encoder_shape"] for r in cpp}

    # ---------------------------------------------------------- results.jsonl
    tmp = args.results + ".tmp"
    with open(tmp, "w") as out:
        for r in cpp + py:
            row = {k: r[k] for k in ("impl", "encoder", "strategy", "total_batch", "micro_batch", "memory_size")}
            row["ms_per_step"] = round(r["ms_per_step"], 3)
            row["ms_steps"] = [round(x, 3) for x in r["ms_steps"]]
            for k in ("encode_ms", "loss_bank_ms", "optimizer_ms", "overhead_share"):
                if k in r:
                    row[k] = round(r[k], 4)
            m = rss_of.get(key(r)) if r["impl"] == "cpp" else None
            row["peak_rss_mb"] = round(m["peak_rss_mb"], 1) if m else None
            row["threads"] = r["threads"]
            out.write(json.dumps(row) + "\n")
        for r in rss:  # configurations measured for memory only
            if ("cpp",) + key(r) not in time_of:
                row = {k: r[k] for k in ("impl", "encoder", "strategy", "total_batch", "micro_batch", "memory_size")}
                row.update(ms_per_step=None, peak_rss_mb=round(r["peak_rss_mb"], 1), threads=r["threads"])
                out.write(json.dumps(row) + "\n")
    os.replace(tmp, args.results)

    # ---------------------------------------------------------- tables
    totals = sorted({r["total_batch"] for r in cpp})
    lines = []
    w = lines.append

    def ms(impl, encoder, strategy, total, micro, memory):
        r = time_of.get((impl, encoder, strategy, total, micro, memory))
        return r["ms_per_step"] if r else None

    def header(first):
        w(f"| {first} | " + " | ".join(f"total {t}" for t in totals) + " |")
        w("|---|" + "---|" * len(totals))

    def ratio(a, b):
        return a / b if a is not None and b else None

    def configs(encoder):
        seen = []
        for r in cpp:
            if r["encoder"] != encoder:
                continue
            c = (r["strategy"], r["micro_batch"] if r["strategy"] != "full_batch" else 0,
                 r["memory_size"] // r["total_batch"] if r["strategy"].startswith("contaccum") else 0)
            if c not in seen:
                seen.append(c)
        seen.sort(key=lambda c: (c[1], ORDER.index(c[0]), c[2]))
        return seen

    def micro_of(c, t):
        return t if c[0] == "full_batch" else c[1]

    targets = []
    # T1: ContAccum / GradAccum at memory 8N, transformer.
    t1 = [(t, ratio(ms("cpp", "transformer", "contaccum", t, 8, 8 * t), ms("cpp", "transformer", "grad_accum", t, 8, 0)))
          for t in totals]
    t1 = [(t, v) for t, v in t1 if v is not None]
    if t1:
        worst = max(v for _, v in t1)
        targets.append(("ContAccum ≤ 1.05 × GradAccum (transformer, micro 8, memory 8 × total)",
                        ", ".join(f"{t}: {v:.2f}" for t, v in t1), worst <= 1.05))
    # T2: GradCache / full batch.
    t2 = [(e, t, m, ratio(ms("cpp", e, "grad_cache", t, m, 0), ms("cpp", e, "full_batch", t, t, 0)))
          for e in ("boe", "transformer") for t in totals for m in (8, 32)]
    t2 = [x for x in t2 if x[3] is not None]
    for e in ("boe", "transformer"):
        xs = [x for x in t2 if x[0] == e]
        if xs:
            targets.append((f"GradCache ≤ 1.40 × full batch ({e})",
                            ", ".join(f"{t}/{m}: {v:.2f}" for _, t, m, v in xs), max(x[3] for x in xs) <= 1.40))
    # T3: C++ / Python.
    t3 = []
    for r in py:
        c = time_of.get(("cpp",) + key(r))
        if c:
            t3.append((r["encoder"], r["strategy"], r["total_batch"], r["micro_batch"], r["memory_size"],
                       c["ms_per_step"] / r["ms_per_step"]))
    for e in ("boe", "transformer"):
        xs = [x for x in t3 if x[0] == e]
        if xs:
            targets.append((f"C++ ≤ 0.8 × Python, every strategy ({e})",
                            f"{min(x[5] for x in xs):.2f} – {max(x[5] for x in xs):.2f} over {len(xs)} configurations",
                            max(x[5] for x in xs) <= 0.8))
    # T4: ContAccum peak memory vs GradAccum.
    for e in ("boe", "transformer"):
        xs = []
        for t in totals:
            a, b = rss_of.get((e, "contaccum", t, 8, 8 * t)), rss_of.get((e, "grad_accum", t, 8, 0))
            if a and b:
                xs.append((t, a["peak_rss_mb"] / b["peak_rss_mb"]))
        if xs:
            targets.append((f"ContAccum peak RSS ≤ 1.10 × GradAccum (micro 8, memory 8 × total, {e})",
                            ", ".join(f"{t}: {v:.2f}" for t, v in xs), max(v for _, v in xs) <= 1.10))

    w("# Benchmarks: step time and memory of every strategy")
    w("")
    w("Written by the command below (`bench/run_strategies.sh`); do not edit by hand. Every number is from")
    w("that one run. Times are wall-clock milliseconds per optimizer step (zero_grad, the strategy's")
    w("gradients, clipping at 2.0, AdamW), the median of the timed steps after warm-up. Within one total")
    w("batch all configurations run interleaved in one process (round r = one step of each, on the same")
    w("batch r, starting one configuration later every round), so the ratios below compare")
    w("configurations measured side by side. Peak memory is each configuration alone in its own process")
    w("(`getrusage` max RSS, which includes LibTorch and the loaded batches).")
    w("")
    w("The main job's step with each allocator and optimizer setting (FusedAdamW or `torch::optim::AdamW`,")
    w("glibc's defaults or kept memory, jemalloc, tcmalloc) and what a step allocates: `docs/PERFORMANCE.md`")
    w("(`bench/performance/`), with the tiled loss's memory against the untiled one over total batches of")
    w("1k-16k and the banks' arithmetic against sgemm. Data-parallel scaling per strategy at 1 and 2 ranks,")
    w("beside the machine's physical limit: `docs/DISTRIBUTED.md` (`bench/distributed/run.sh`).")
    w("")
    w("## Targets")
    w("")
    w("| target | measured (total batch[/micro]: value) | met |")
    w("|---|---|---|")
    for name, value, ok in targets:
        w(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
    w("")
    w("MISSES_PLACEHOLDER")
    w("")
    for encoder, title in (("boe", "Bag of embeddings"), ("transformer", "Transformer")):
        if encoder not in shapes:
            continue
        s = shapes[encoder]
        if encoder == "boe":
            desc = (f"two towers: embeddings {s['embedding_dim']} wide, masked mean, dropout 0.1, linear to "
                    f"{s['dim']}")
        else:
            desc = (f"two BERT-style towers: {s['layers']} layers, hidden {s['hidden']}, {s['heads']} heads, "
                    f"intermediate {s['intermediate']}, CLS pooling")
        w(f"## {title}")
        w("")
        w(f"{desc}; vocabulary {manifest['vocab_size']}; queries {s['query_length']} tokens, passages "
          f"{s['passage_length']} tokens (padded); 1 hard negative per example (2 passages per query).")
        w("")
        w("### Milliseconds per step (C++)")
        w("")
        header("configuration")
        for c in configs(encoder):
            cells = [fmt_ms(ms("cpp", encoder, c[0], t, micro_of(c, t), c[2] * t)) for t in totals]
            w(f"| {label(c[0], c[1], c[2] * 100, 100)} | " + " | ".join(cells) + " |")
        w("")
        w("### Ratios, side by side")
        w("")
        header("ratio")
        micros = sorted({c[1] for c in configs(encoder) if c[0] != "full_batch"})
        for m in micros:
            for mult in (1, 8):
                cells = [fmt_ratio(ratio(ms("cpp", encoder, "contaccum", t, m, mult * t),
                                         ms("cpp", encoder, "grad_accum", t, m, 0))) for t in totals]
                if any(x != "–" for x in cells):
                    w(f"| ContAccum (memory {'N' if mult == 1 else '8N'}) / GradAccum, micro {m} | "
                      + " | ".join(cells) + " |")
            cells = [fmt_ratio(ratio(ms("cpp", encoder, "grad_cache", t, m, 0), ms("cpp", encoder, "full_batch", t, t, 0)))
                     for t in totals]
            w(f"| GradCache / full batch, micro {m} | " + " | ".join(cells) + " |")
            cells = [fmt_ratio(ratio(ms("cpp", encoder, "grad_cache", t, m, 0), ms("cpp", encoder, "grad_accum", t, m, 0)))
                     for t in totals]
            w(f"| GradCache / GradAccum (the extra forward), micro {m} | " + " | ".join(cells) + " |")
            cells = [fmt_ratio(ratio(ms("cpp", encoder, "grad_accum", t, m, 0), ms("cpp", encoder, "full_batch", t, t, 0)))
                     for t in totals]
            w(f"| GradAccum / full batch (micro-batching itself), micro {m} | " + " | ".join(cells) + " |")
        w("")
        w("### C++ / Python reference (same batches, models, optimizer, threads)")
        w("")
        py_configs = [c for c in configs(encoder)
                      if any(("python", encoder, c[0], t, micro_of(c, t), c[2] * t) in time_of for t in totals)]
        if py_configs:
            header("configuration")
            for c in py_configs:
                cells = []
                for t in totals:
                    a = ms("cpp", encoder, c[0], t, micro_of(c, t), c[2] * t)
                    b = ms("python", encoder, c[0], t, micro_of(c, t), c[2] * t)
                    cells.append("–" if a is None or b is None else f"{a / b:.2f} ({fmt_ms(a)} / {fmt_ms(b)} ms)")
                w(f"| {label(c[0], c[1], c[2] * 100, 100)} | " + " | ".join(cells) + " |")
        w("")
        w("### Library overhead: share of a step outside the towers' forward and backward passes")
        w("")
        w("`1 - encode / step`, where `encode` is the time in the towers' forward passes and in the")
        w("backward passes (whose cost is the towers'); the rest is the loss, the banks and their score")
        w("cache, copies, clipping and the optimizer. In brackets: loss + banks, and optimizer, in ms.")
        w("")
        header("configuration")
        for c in configs(encoder):
            cells = []
            for t in totals:
                r = time_of.get(("cpp", encoder, c[0], t, micro_of(c, t), c[2] * t))
                cells.append("–" if not r else
                             f"{100 * r['overhead_share']:.0f} % ({fmt_ms(r['loss_bank_ms'])}, {fmt_ms(r['optimizer_ms'])})")
            w(f"| {label(c[0], c[1], c[2] * 100, 100)} | " + " | ".join(cells) + " |")
        w("")
        w("### Peak resident memory, MB (each configuration in its own process)")
        w("")
        header("configuration")
        rss_configs = []
        for r in rss:
            if r["encoder"] != encoder:
                continue
            c = (r["strategy"], r["micro_batch"] if r["strategy"] != "full_batch" else 0,
                 r["memory_size"] // r["total_batch"])
            if c not in rss_configs:
                rss_configs.append(c)
        for c in rss_configs:
            cells = []
            for t in totals:
                r = rss_of.get((encoder, c[0], t, micro_of(c, t), c[2] * t))
                cells.append("–" if not r else f"{r['peak_rss_mb']:.0f}")
            w(f"| {label(c[0], c[1], c[2] * 100, 100)} | " + " | ".join(cells) + " |")
        base = [r["baseline_rss_mb"] for r in rss if r["encoder"] == encoder]
        if base:
            w("")
            w(f"Resident memory before the model is built (LibTorch, the batches): "
              f"{min(base):.0f}–{max(base):.0f} MB.")
        w("")
    before_after = read_jsonl(os.path.join(args.work, "before-after.jsonl"))
    if before_after:
        revs = {r["build"]: r["revision"] for r in before_after}
        w("## Before / after this round's changes")
        w("")
        w(f"Revision `{revs.get('before', '?')}` (before) materialised every banked query's row of the score")
        w("matrix in every micro-batch: `(n + m) x (n + m)(1 + h)` scores, their log-softmax and its")
        w(f"backward. `{revs.get('after', '?')}` (after) reduces a banked row to its scores against the current")
        w("passages plus one cached log-sum-exp over the bank (`BankScoreCache`, updated per write). The")
        w("bag of embeddings also changed: before, it gathered a `[batch, seq, dim]` tensor, masked and")
        w("summed it, and every backward built the embedding table's whole gradient; after, one weighted")
        w("`embedding_bag`, with small batches back-propagated row by row into the dense `.grad`.")
        w("Same bench sources built against both libraries, run alternately "
          f"({max(r['repeat'] for r in before_after) + 1} times each); median ms per step over all runs.")
        w("")
        w("| encoder | configuration | total | before | after | after / before | ContAccum / GradAccum before → after |")
        w("|---|---|---|---|---|---|---|")
        groups = {}
        for r in before_after:
            groups.setdefault((r["build"],) + key(r), []).extend(r["ms_steps"])
        for (b, e, s, t, m, mem) in sorted(k for k in groups if k[0] == "after"):
            a, bf = statistics.median(groups[(b, e, s, t, m, mem)]), groups.get(("before", e, s, t, m, mem))
            bf = statistics.median(bf) if bf else None
            ga_a = groups.get(("after", e, "grad_accum", t, m, 0))
            ga_b = groups.get(("before", e, "grad_accum", t, m, 0))
            rel = "–"
            if ga_a and ga_b and bf and s != "grad_accum":
                rel = f"{bf / statistics.median(ga_b):.2f} → {a / statistics.median(ga_a):.2f}"
            w(f"| {e} | {label(s, m, mem, t)} | {t} | {fmt_ms(bf)} | {fmt_ms(a)} | "
              f"{fmt_ratio(a / bf if bf else None)} | {rel} |")
        w("")
    w("## Command")
    w("")
    w("```sh")
    w(args.command)
    w("```")
    w("")
    w("It installs the packages (`scripts/install-deps.sh`), builds only the benchmark in `build-bench/`")
    w("(Release), tokenizes the batches once (`contaccum_bench_strategies prepare`: debpkg training")
    w("examples with their first BM25 hard negative, a WordPiece vocabulary learned from the corpus), runs")
    w("the C++ grid (`contaccum_bench_strategies time`), the Python reference")
    w("(`bench/strategies/reference.py`, Debian's python3-torch) right after the C++ run of each total")
    w("batch, one `contaccum_bench_strategies rss` process per configuration, and this report")
    w("(`bench/strategies/report.py`). Both files are written to a temporary file first and then renamed.")
    w("")
    w("## Machine")
    w("")
    w(machine() + f"; {cpp[0]['threads'] if cpp else '?'} intra-op threads.")
    w("")
    text = "\n".join(lines)
    notes_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    notes = open(notes_path).read().strip() if os.path.exists(notes_path) else ""
    text = text.replace("MISSES_PLACEHOLDER", notes)
    tmp = args.markdown + ".tmp"
    with open(tmp, "w") as f:
        f.write(text.rstrip() + "\n")
    os.replace(tmp, args.markdown)


if __name__ == "__main__":
    main()
