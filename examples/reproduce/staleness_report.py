"""The bank staleness section of docs/RESULTS.md (report.py calls it).

Reads the `staleness` objects that `staleness_every` writes into each run's
metrics.jsonl: per bank the mean and minimum cosine between banked vectors
and their re-encoding by the current towers, the same by age bucket, and the
share of sampled positives that change place for their own query.
"""
import json
import os
import statistics

STUDY = ["contaccum-8x16-m1024-staleness", "contaccum-8x16-m4096-staleness", "contaccum-8x16-m8192-staleness",
         "contaccum-8x16-m1024-momentum-0.9", "contaccum-8x16-m1024-momentum-0.99"]
EARLY = (1, 300)  # steps: warm-up (100 steps) and the fast start
LATE_STEPS = 1000  # the last steps of a run, where the learning rate has decayed


def read_staleness(metrics):
    """(step, staleness object, step seconds) of every measured step, and the seconds of all steps."""
    out, total = [], 0.0
    with open(metrics) as f:
        for line in f:
            j = json.loads(line)
            total += j["seconds"]["total"]
            if "staleness" in j:
                out.append((j["step"], j["staleness"], j["seconds"]["total"]))
    return out, total


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _fmt(v, digits=4):
    return "–" if v is None else f"{v:.{digits}f}"


def _window(records, lo, hi):
    return [r for step, r, _ in records if lo <= step <= hi]


def _per_seed(runs, fn):
    """fn(records) per seed, averaged over the seeds (None where no seed has it)."""
    return _mean([fn(r) for r in runs])


def _late(records):
    last = records[-1][0]
    return _window(records, last - LATE_STEPS + 1, last)


def _middle(records):
    """Between the early window and the late one: where large banks are still catching up."""
    return _window(records, EARLY[1] + 1, records[-1][0] - LATE_STEPS)


def write_staleness(w, results, runs_of, figures, table_row, table_header, table_rule, plot, names):
    """Writes the section; `runs_of[m]` lists each seed's `read_staleness`."""
    totals = {m: [t for _, t in runs_of[m]] for m in runs_of}
    runs_of = {m: [rs for rs, _ in runs_of[m]] for m in runs_of}
    methods = [m for m in STUDY if m in runs_of]
    if not methods:
        return
    w("## Bank staleness and the momentum bank encoder")
    w("")
    w("Runs of `examples/reproduce/staleness/*.set` (ContAccum 8 x 16, `base.yaml`, `staleness_every: 10`,")
    w("256 banked examples re-encoded each time by the current towers in eval mode). Dev results, beside")
    w("ContAccum 8 x 16 with banks of 1024 from the comparison:")
    w("")
    w(table_header)
    w(table_rule)
    for m in ["contaccum-8x16-m1024"] + methods:
        row = table_row(m)
        if row:
            w(row)
    w("")
    w(f"Staleness, mean over seeds of each window's mean (\"early\": steps {EARLY[0]}-{EARLY[1]}; \"late\": the last")
    w("1,000 steps; \"middle\": the steps between); cosine between a banked vector and its re-encoding,")
    w("\"min\" the smallest single row over the whole run; \"rank changed\": the share of sampled positives")
    w("ranked at another place among the sample's positives for their own query; cost: seconds per")
    w("measurement, and all measurements' share of the run's step time.")
    w("")
    w("| method | query cos early | query cos late | passage cos early | passage cos middle | passage cos late | "
      "min passage cos | "
      "rank changed early | rank changed late | seconds per measurement | share of step time |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        runs = runs_of[m]

        def side(records, key, field="mean_cosine"):
            return _mean([r[key][field] for r in records])

        cost = _per_seed(runs, lambda rs: _mean([r["seconds"] for _, r, _ in rs]))
        share = _mean([sum(r["seconds"] for _, r, _ in rs) / max(1e-9, t) for rs, t in zip(runs, totals[m])])
        w(f"| {names.get(m, m)} | "
          f"{_fmt(_per_seed(runs, lambda rs: side(_window(rs, *EARLY), 'query')))} | "
          f"{_fmt(_per_seed(runs, lambda rs: side(_late(rs), 'query')))} | "
          f"{_fmt(_per_seed(runs, lambda rs: side(_window(rs, *EARLY), 'passage')))} | "
          f"{_fmt(_per_seed(runs, lambda rs: side(_middle(rs), 'passage')))} | "
          f"{_fmt(_per_seed(runs, lambda rs: side(_late(rs), 'passage')))} | "
          f"{_fmt(min(min(r['passage']['min_cosine'] for _, r, _ in rs) for rs in runs))} | "
          f"{_fmt(_per_seed(runs, lambda rs: _mean([r['rank_changed'] for r in _window(rs, *EARLY)])), 3)} | "
          f"{_fmt(_per_seed(runs, lambda rs: _mean([r['rank_changed'] for r in _late(rs)])), 3)} | "
          f"{_fmt(cost, 3)} | {_fmt(None if share is None else 100 * share, 2)}% |")
    w("")

    # By age: passage bank, early, middle and late windows.
    buckets = sorted({(b["min_age"], b["max_age"]) for m in methods for rs in runs_of[m] for _, r, _ in rs
                      for b in r["passage"]["by_age"]})
    label = {b: (f"{b[0]}" if b[0] == b[1] else f"{b[0]}-{b[1]}") for b in buckets}
    w("Passage bank by age (optimizer steps since the row was encoded), mean cosine, early / middle / late:")
    w("")
    w("| method | " + " | ".join(f"age {label[b]}" for b in buckets) + " |")
    w("|---|" + "---|" * len(buckets))
    age_curves = []
    for m in methods:
        cells, points = [], []
        for b in buckets:
            def at(records, b=b):
                return _mean([x["mean_cosine"] for r in records for x in r["passage"]["by_age"]
                              if (x["min_age"], x["max_age"]) == b])
            early = _per_seed(runs_of[m], lambda rs: at(_window(rs, *EARLY)))
            middle = _per_seed(runs_of[m], lambda rs: at(_middle(rs)))
            late = _per_seed(runs_of[m], lambda rs: at(_late(rs)))
            every = _per_seed(runs_of[m], lambda rs: at([r for _, r, _ in rs]))
            cells.append("–" if early is None and late is None else
                         f"{_fmt(early, 3)} / {_fmt(middle, 3)} / {_fmt(late, 3)}")
            if every is not None:
                # Plotted at the middle of the ages the bucket holds (the oldest bucket is cut at the
                # bank's oldest row).
                oldest = max(r["passage"]["max_age"] for rs in runs_of[m] for _, r, _ in rs)
                points.append(((b[0] + min(b[1], oldest)) / 2, every))
        age_curves.append((m, points))
        w(f"| {names.get(m, m)} | " + " | ".join(cells) + " |")
    w("")

    step_curves = {"passage": [], "query": []}
    for m in methods:
        for key in step_curves:
            per_seed = [{step: r[key]["mean_cosine"] for step, r, _ in rs} for rs in runs_of[m]]
            steps = sorted(set.intersection(*[set(c) for c in per_seed]))
            step_curves[key].append((m, [(st, statistics.mean(c[st] for c in per_seed)) for st in steps]))
    for key in step_curves:
        plot(step_curves[key], f"{key.capitalize()} bank: cosine of banked vector and re-encoding (mean over seeds)",
             "mean cosine", os.path.join(figures, f"staleness-{key}-step.png"), key="below")
    plot(age_curves, "Passage bank: cosine against age, every measurement (mean over seeds)", "mean cosine",
         os.path.join(figures, "staleness-age.png"), xlabel="age in optimizer steps (middle of each bucket)", logx=True,
         points=True, key="below")
    w("![passage bank staleness against step](results/staleness-passage-step.png)")
    w("")
    w("![query bank staleness against step](results/staleness-query-step.png)")
    w("")
    w("![passage bank staleness against age](results/staleness-age.png)")
    w("")
