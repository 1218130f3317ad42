"""The false-negative section of docs/RESULTS.md (report.py calls it).

Each configuration of `examples/reproduce/masking/` is a run with
`mask_false_negatives: true` beside the same configuration without masking
(trained before masking existed, or with `mask_false_negatives=false`),
seed by seed: the same seed draws the same initial weights and the same
batches, so the difference is the masking. Also reads the masked counts
that every step writes into metrics.jsonl (`masked`).
"""
import json
import os
import statistics

# masked configuration -> the same configuration unmasked (the staleness
# study's runs train exactly as the unmeasured ones: measuring changes no
# state).
PAIRS = {
    "contaccum-8x16-m1024-masked": "contaccum-8x16-m1024-staleness",
    "contaccum-8x16-m4096-masked": "contaccum-8x16-m4096-staleness",
    "contaccum-8x16-m8192-masked": "contaccum-8x16-m8192-staleness",
    "dpr-128-masked": "dpr-128",
}
KINDS = ["in_batch", "hard_negative", "bank", "banked_query"]
EXAMPLES_PER_STEP = 128


def read_masked(metrics):
    """Mean masked entries per step by kind, over every step of a run."""
    sums, steps = {k: 0 for k in KINDS}, 0
    with open(metrics) as f:
        for line in f:
            j = json.loads(line)
            if "masked" not in j:
                continue
            steps += 1
            for k in KINDS:
                sums[k] += j["masked"][k]
    return {k: sums[k] / steps for k in KINDS} if steps else None


def _seeds(results, m):
    return {r["seed"]: r for r in results.get(m, [])}


def write_masking(w, results, table_row, table_header, table_rule, names):
    methods = [m for m in PAIRS if m in results]
    if not methods:
        return
    w("## False negatives: masking a query's own positives")
    w("")
    w("Runs of `examples/reproduce/masking/*.set` (`mask_false_negatives: true`, `base.yaml`), each beside")
    w("the same configuration without masking (ContAccum's unmasked runs are the staleness study's, which")
    w("train exactly as unmeasured runs):")
    w("")
    w(table_header)
    w(table_rule)
    for m in methods:
        for name in (PAIRS[m], m):
            row = table_row(name)
            if row:
                w(row)
    w("")
    w("Seed by seed (same initial weights, same batches): MRR@10 masked minus unmasked, and the score")
    w("entries masked per step (mean over all steps and seeds) by kind: current queries against other")
    w("examples' positives (in-batch), against hard negatives, against banked passages; banked queries")
    w("against current passages. \"own positive in the bank\": the bank entries as a share of the")
    w("step's 128 examples (each is one current query whose positive sits in the passage bank).")
    w("")
    w("| method | seeds paired | MRR@10 masked - unmasked, per seed | mean | in-batch | hard negative | bank | "
      "banked query | own positive in the bank |")
    w("|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        masked, plain = _seeds(results, m), _seeds(results, PAIRS[m])
        paired = sorted(set(masked) & set(plain))
        diffs = [masked[s]["mrr@10"] - plain[s]["mrr@10"] for s in paired]
        counts = [read_masked(os.path.join(masked[s]["dir"], "run", "metrics.jsonl")) for s in sorted(masked)]
        counts = [c for c in counts if c]
        mean = {k: statistics.mean(c[k] for c in counts) for k in KINDS} if counts else None
        per_seed = ", ".join(f"{d:+.4f}" for d in diffs) if diffs else "–"
        mean_diff = f"{statistics.mean(diffs):+.4f}" if diffs else "–"
        cells = [f"{mean[k]:.2f}" for k in KINDS] if mean else ["–"] * 4
        share = f"{100 * mean['bank'] / EXAMPLES_PER_STEP:.1f}%" if mean else "–"
        w(f"| {names.get(m, m)} | {len(paired)} | {per_seed} | {mean_diff} | " + " | ".join(cells) + f" | {share} |")
    w("")
