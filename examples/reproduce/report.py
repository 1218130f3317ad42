#!/usr/bin/python3
"""Writes docs/RESULTS.md and its plots from the runs of examples/reproduce/run.sh.

Table: dev metrics of every method as mean ± sample standard deviation over
seeds, BM25 beside them, wall time per run. Plots (gnuplot): training loss
and the grad-norm ratio ||grad E_q|| / ||grad E_p|| per step, mean over
seeds, smoothed with a moving average.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import tempfile

from masking_report import write_masking
from staleness_report import read_staleness, write_staleness

METRICS = ["top@1", "top@5", "top@20", "top@100", "mrr@10", "ndcg@10"]
ORDER = ["dpr-128", "dpr-8", "grad-accum-8x16", "grad-cache-8x16", "contaccum-8x16-m1024",
         "contaccum-no-query-bank", "contaccum-no-passage-bank", "contaccum-cleared-banks"]
NAMES = {
    "dpr-128": "DPR, batch 128 (full batch)",
    "dpr-8": "DPR, batch 8",
    "grad-accum-8x16": "GradAccum 8 x 16",
    "grad-cache-8x16": "GradCache 8 x 16",
    "contaccum-8x16-m1024": "ContAccum 8 x 16, memory 1024",
    "contaccum-no-query-bank": "ContAccum without query bank",
    "contaccum-no-passage-bank": "ContAccum without passage bank",
    "contaccum-cleared-banks": "ContAccum, banks cleared every step",
    "dpr-128-attention": "DPR, batch 128, attention pooling",
    "contaccum-8x16-m1024-attention": "ContAccum 8 x 16, memory 1024, attention pooling",
    "dpr-128-tuned": "DPR, batch 128, attention pooling, 512 wide, passages 512 tokens",
    "contaccum-8x16-m1024-tuned": "ContAccum 8 x 16, memory 1024, attention pooling, 512 wide, passages 512 tokens",
    "dpr-128-tuned-1024": "DPR, batch 128, attention pooling, 1024 wide, passages 512 tokens",
    "contaccum-8x16-m1024-tuned-1024": "ContAccum 8 x 16, memory 1024, attention pooling, 1024 wide, passages 512 tokens",
    "contaccum-no-query-bank-cleared": "ContAccum without query bank, banks cleared every step",
    "contaccum-no-passage-bank-cleared": "ContAccum without passage bank, banks cleared every step",
    "contaccum-8x16-m1024-staleness": "ContAccum 8 x 16, memory 1024 (staleness measured)",
    "contaccum-8x16-m4096-staleness": "ContAccum 8 x 16, memory 4096 (staleness measured)",
    "contaccum-8x16-m8192-staleness": "ContAccum 8 x 16, memory 8192 (staleness measured)",
    "contaccum-8x16-m1024-momentum-0.9": "ContAccum 8 x 16, memory 1024, momentum bank encoder 0.9",
    "contaccum-8x16-m1024-momentum-0.99": "ContAccum 8 x 16, memory 1024, momentum bank encoder 0.99",
    "contaccum-8x16-m1024-bank-bf16": "ContAccum 8 x 16, memory 1024, banks stored in bf16",
    "contaccum-8x16-m1024-masked": "ContAccum 8 x 16, memory 1024, false negatives masked",
    "contaccum-8x16-m4096-masked": "ContAccum 8 x 16, memory 4096, false negatives masked",
    "contaccum-8x16-m8192-masked": "ContAccum 8 x 16, memory 8192, false negatives masked",
    "dpr-128-masked": "DPR, batch 128 (full batch), false negatives masked",
}
DAGGER = " †"


def mean_std(values):
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def read_curve(path, field):
    out = []
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if field in j and j[field] is not None:
                out.append((j["step"], float(j[field])))
    return out


def smooth(points, window):
    out, acc = [], []
    for step, value in points:
        acc.append(value)
        if len(acc) > window:
            acc.pop(0)
        out.append((step, sum(acc) / len(acc)))
    return out


def mean_curve(curves):
    # Steps are the same across seeds of one method; average what all have.
    n = min(len(c) for c in curves)
    return [(curves[0][i][0], statistics.mean(c[i][1] for c in curves)) for i in range(n)]


def plot(curves, title, ylabel, path, logscale=False, xlabel="optimizer step", logx=False, points=False,
         key="outside right"):
    with tempfile.TemporaryDirectory() as data_dir:
        plot_from(data_dir, curves, title, ylabel, path, logscale, xlabel, logx, points, key)


def plot_from(data_dir, curves, title, ylabel, path, logscale, xlabel, logx, with_points, key):
    parts = []
    for i, (method, points) in enumerate(curves):
        dat = os.path.join(data_dir, f"{method}.dat")
        with open(dat, "w") as f:
            f.writelines(f"{s} {v}\n" for s, v in points)
        style = "linespoints pt 7" if with_points else "lines"
        parts.append(f"'{dat}' using 1:2 with {style} lw 2 title '{NAMES.get(method, method)}'")
    script = [
        "set terminal pngcairo size 1100,650 font ',11'",
        f"set output '{path}'",
        f"set title '{title}'",
        f"set xlabel '{xlabel}'",
        f"set ylabel '{ylabel}'",
        f"set key {key}",
        "set grid",
    ]
    if logscale:
        script.append("set logscale y")
    if logx:
        script.append("set logscale x 2")
    script.append("plot " + ", ".join(parts))
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)


CHECK_PAIRS = [("dpr-128", "grad-cache-8x16", "GradCache 8 x 16 = DPR, batch 128"),
               ("grad-accum-8x16", "contaccum-memory-0", "ContAccum 8 x 16, memory 0 = GradAccum 8 x 16")]


def write_checks(w, checks):
    """The spec's equalities, trained step by step through the CLI (run.sh's check_one)."""
    rows = []
    for a, b, title in CHECK_PAIRS:
        runs = [os.path.join(checks, x, "run") for x in (a, b)]
        if not all(os.path.exists(os.path.join(r, "eval.json")) for r in runs):
            continue
        curves = [dict(read_curve(os.path.join(r, "metrics.jsonl"), "loss")) for r in runs]
        norms = [dict(read_curve(os.path.join(r, "metrics.jsonl"), "grad_norm")) for r in runs]
        steps = sorted(set(curves[0]) & set(curves[1]))
        loss_diff = max(abs(curves[0][s] - curves[1][s]) for s in steps)
        norm_rel = max(abs(norms[0][s] - norms[1][s]) / max(norms[0][s], 1e-30) for s in steps)
        first_loss = max(abs(curves[0][s] - curves[1][s]) for s in steps[:10])
        mrr = [json.load(open(os.path.join(r, "eval.json")))["final"]["mrr@10"] for r in runs]
        rows.append(f"| {title} | {len(steps)} | {first_loss:.1e} | {loss_diff:.1e} | {norm_rel:.1e} | "
                    f"{mrr[0]:.4f} / {mrr[1]:.4f} |")
    if not rows:
        return
    w("## The spec's equalities on this data")
    w("")
    w("Pairs that must train identically (dropout off, seed 1, 200 optimizer steps, every step logged; same")
    w("`base.yaml`, same CLI): the largest difference of the logged loss over the first 10 and over all steps,")
    w("the largest relative difference of the total gradient norm, and dev MRR@10 of both models.")
    w("")
    w("| pair | steps | max abs Δ loss, steps 1-10 | max abs Δ loss | max rel. Δ grad norm | dev MRR@10 |")
    w("|---|---|---|---|---|---|")
    for r in rows:
        w(r)
    w("")


class Previous:
    """What the RESULTS.md being replaced holds, for methods and sections this invocation did not rerun
    (run.sh with METHODS / EXTRA_CONFIGS / CHECKS set): their rows and sections are carried over, marked."""

    def __init__(self, path):
        self.text = open(path).read() if os.path.exists(path) else ""
        self.rows = {}
        for line in self.text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and len(cells) > 1:
                self.rows[(cells[0].removesuffix(DAGGER.strip()).strip(), len(cells))] = line

    def row(self, name, cells):
        line = self.rows.get((name, cells))
        if line is None:
            return None
        # Mark it once: "| name † | ...".
        head, rest = line[2:].split(" |", 1)
        return "| " + head.removesuffix(DAGGER) + DAGGER + " |" + rest

    def section(self, heading):
        """The section under `heading` up to the next "## " heading, or None."""
        lines = self.text.splitlines()
        if heading not in lines:
            return None
        start = lines.index(heading)
        end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        return "\n".join(lines[start:end]).rstrip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--figures", required=True)
    args = ap.parse_args()
    previous = Previous(args.markdown)

    results = {}
    for path in glob.glob(os.path.join(args.runs, "*", "seed*", "dev.json")):
        d = json.load(open(path))
        d["dir"] = os.path.dirname(path)
        results.setdefault(d["method"], []).append(d)
    here = os.path.dirname(os.path.abspath(__file__))

    def listed(group):
        return sorted(f[:-4] for f in os.listdir(os.path.join(here, group)) if f.endswith(".set"))

    study = set(listed("staleness"))
    masking = set(listed("masking"))
    extra_all = listed("extra")
    methods_all = ORDER + sorted(m for m in results
                                 if m not in ORDER and m not in extra_all and m not in study and m not in masking)
    methods = [m for m in methods_all if m in results]
    extra = [m for m in extra_all if m in results]
    bm25 = json.load(open(os.path.join(args.runs, "bm25.json")))
    base = open(os.path.join(here, "base.yaml")).read()

    os.makedirs(args.figures, exist_ok=True)
    loss_curves, ratio_curves, steps, ratios_per_seed, staleness = [], [], {}, {}, {}
    for m in sorted(results):
        loss, ratio = [], []
        for r in results[m]:
            metrics = os.path.join(r["dir"], "run", "metrics.jsonl")
            loss.append(read_curve(metrics, "loss"))
            ratio.append(read_curve(metrics, "grad_norm_ratio"))
            steps[m] = len(loss[-1])
            if m in study:
                staleness.setdefault(m, []).append(read_staleness(metrics))
        ratios_per_seed[m] = [[v for _, v in c] for c in ratio]
        window = max(1, steps[m] // 100)
        loss_curves.append((m, smooth(mean_curve(loss), window)))
        ratio_curves.append((m, smooth(mean_curve(ratio), window)))
    # DPR-8 takes 16x the steps; plot the methods with 128 examples per step.
    # Replotted only when every method of the comparison was run here.
    plotted = [m for m in ORDER if m != "dpr-8"]
    replot = all(m in results for m in plotted)
    if replot:
        plot([c for c in loss_curves if c[0] in plotted], "Training loss (mean over seeds, moving average)",
             "InfoNCE loss", os.path.join(args.figures, "loss.png"))
        plot([c for c in ratio_curves if c[0] in plotted],
             "||grad E_q|| / ||grad E_p|| (mean over seeds, moving average)", "ratio",
             os.path.join(args.figures, "grad-norm-ratio.png"), logscale=True)

    lines = []
    w = lines.append
    carried = []
    w("# Reproduction: ContAccum against DPR, GradAccum and GradCache on debpkg")
    w("")
    w("Written by the command below from its own runs; do not edit by hand.")
    w("")
    w("## Dev results (2,000 queries; mean ± standard deviation over seeds)")
    w("")
    table_header = "| method | seeds | " + " | ".join(METRICS) + " | steps | wall time per run |"
    table_rule = "|---|---|" + "---|" * len(METRICS) + "---|---|"
    table_cells = 2 + len(METRICS) + 2

    def table_row(m):
        if m not in results:
            old = previous.row(NAMES.get(m, m), table_cells)
            if old:
                carried.append(m)
            return old
        cells = []
        for k in METRICS:
            mu, sd = mean_std([r[k] for r in results[m]])
            cells.append(f"{mu:.3f} ± {sd:.3f}" if len(results[m]) > 1 else f"{mu:.3f}")
        wall, _ = mean_std([r["wall_seconds"] for r in results[m]])
        # A resumed run's wall time covers only its last part.
        mark = " (resumed: part)" if any(r.get("resumed") for r in results[m]) else ""
        return (f"| {NAMES.get(m, m)} | {len(results[m])} | " + " | ".join(cells) +
                f" | {steps[m]:,} | {wall / 60:.1f} min{mark} |")

    def rows(ms):
        return [r for r in (table_row(m) for m in ms) if r]

    w(table_header)
    w(table_rule)
    for r in rows(methods_all):
        w(r)
    w("| BM25 (k1 0.9, b 0.4) | – | " + " | ".join(f"{bm25[k]:.3f}" for k in METRICS) + " | – | – |")
    w("")
    extra_rows = rows(extra_all)
    if extra_rows:
        w("### Beyond the comparison (`examples/reproduce/extra/`: tuning and diagnostics)")
        w("")
        w(table_header)
        w(table_rule)
        for r in extra_rows:
            w(r)
        w("")
    carried_rows = len(carried)
    if carried:
        w(f"Rows marked †: not rerun by this invocation of the command; carried over, as they were, from the")
        w("RESULTS.md it replaced (every row has its run's own figures; a full run of the command reruns them).")
        w("")
    w("## Curves")
    w("")
    if not replot:
        w("The two plots are those of the last invocation that ran every method of the comparison.")
        w("")
    w("![training loss](results/loss.png)")
    w("")
    w("![gradient-norm ratio](results/grad-norm-ratio.png)")
    w("")
    w("Grad-norm ratio `||grad E_q|| / ||grad E_p||` per step: median over steps (mean over seeds), smallest and largest step:")
    w("")
    w("| method | median ratio | min ratio | max ratio |")
    w("|---|---|---|---|")
    for m in methods_all + extra_all + sorted(study) + sorted(masking):
        if m not in results:
            old = previous.row(NAMES.get(m, m), 4)
            if old:
                w(old)
            continue
        meds, mins, maxs = [], [], []
        for c in ratios_per_seed[m]:
            meds.append(statistics.median(c))
            mins.append(min(c))
            maxs.append(max(c))
        w(f"| {NAMES.get(m, m)} | {statistics.mean(meds):.3f} | {min(mins):.3f} | {max(maxs):.3f} |")
    w("")
    write_staleness(w, results, staleness, args.figures, table_row, table_header, table_rule, plot, NAMES)
    staleness_notes = os.path.join(here, "staleness.md")
    if staleness and os.path.exists(staleness_notes):
        w(open(staleness_notes).read().strip())
        w("")
    write_masking(w, results, table_row, table_header, table_rule, NAMES)
    masking_notes = os.path.join(here, "masking.md")
    if any(m in results for m in masking) and os.path.exists(masking_notes):
        w(open(masking_notes).read().strip())
        w("")
    if len(carried) > carried_rows:
        w("Rows marked †: carried over from the RESULTS.md this one replaced, as above.")
        w("")
    checks = os.path.join(args.runs, "checks")
    old_checks = previous.section("## The spec's equalities on this data")
    if os.path.isdir(checks):
        write_checks(w, checks)
    elif old_checks:
        # A section carried over before already ends with the note: keep one.
        note = "(Carried over from the RESULTS.md this one replaced: this invocation ran no checks.)"
        w(old_checks.replace(note, "").rstrip())
        w("")
        w(note)
        w("")
    overlap = os.path.join(args.runs, "top1-overlap.txt")
    old_overlap = previous.section("## Rank 1: the best dense model against BM25")
    if os.path.exists(overlap):
        w("## Rank 1: the best dense model against BM25")
        w("")
        w("`top1_overlap.py` on both systems' dev run files (run.sh writes them):")
        w("")
        w("```")
        w(open(overlap).read().strip())
        w("```")
        w("")
    elif old_overlap:
        w(old_overlap)
        w("")
    notes = os.path.join(here, "discussion.md")
    if os.path.exists(notes):
        w(open(notes).read().strip())
        w("")
    w("## Setup")
    w("")
    w("Every run: `contaccum train --config examples/reproduce/base.yaml` plus its method's keys")
    w("(`examples/reproduce/methods/*.set`) and the seed, then `contaccum eval` of the final model on")
    w("`qrels/dev.tsv` (exact search, k = 100); `contaccum bm25` beside them. `base.yaml`:")
    w("")
    w("```yaml")
    w(base.strip())
    w("```")
    w("")
    w("## Command")
    w("")
    w("```sh")
    w(args.command)
    w("```")
    w("")
    text = "\n".join(lines) + "\n"
    tmp = args.markdown + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.markdown)


if __name__ == "__main__":
    main()
