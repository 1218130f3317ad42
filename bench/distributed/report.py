"""Writes the data-parallel scaling table into docs/DISTRIBUTED.md.

Usage: python3 bench/distributed/report.py RESULTS.jsonl DOC.md
Replaces what lies between the markers <!-- scaling:begin --> and
<!-- scaling:end --> in DOC.md.
"""
import json
import statistics
import sys

results_path, doc_path = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(results_path) if line.strip()]
runs = [r for r in rows if r.get("kind", "run") == "run"]
pairs = [r for r in rows if r.get("kind") == "independent_pair"]
collectives_alone = [r for r in rows if r.get("kind") == "collective" and r["ranks"] == 2]
strategies = list(dict.fromkeys(r["strategy"] for r in runs))
ranks = sorted({r["ranks"] for r in runs})
rounds = sorted({r.get("round", 1) for r in runs})
by = {(r["strategy"], r["ranks"], r.get("round", 1)): r for r in runs}
first = runs[0]
params = first.get("parameters", 0)
total, dim, group = first["total_batch"], first["dim"], first["group"]


def step(s, w):
    """Median over the rounds of a configuration's median step."""
    return statistics.median(by[(s, w, k)]["step_seconds"] for k in rounds)


def mean_of(s, w, key):
    return statistics.median(by[(s, w, k)][key] for k in rounds)


out = []
out.append(f"Measured by `bash bench/distributed/run.sh` ({first['machine']}; each rank 1 thread; "
           f"a 2-layer BERT, 128 wide, {params:,} parameters in both towers; total batch {total}, micro-batch "
           f"{first['micro_batch']} per rank, {group - 1} hard negative(s), banks of {first['memory_size']}; "
           f"each run's median of {first['timed_steps']} steps after 4 untimed, {len(rounds)} rounds "
           f"interleaved, the median over the rounds; in brackets each round's ratio).")
out.append("")
head = "| strategy | " + " | ".join(f"{w} rank{'s' if w > 1 else ''}: examples/s (x1 rank)" for w in ranks)
head += " | " + " | ".join(f"{w}: collectives" for w in ranks if w > 1) + " | peak RSS per rank, MB |"
out.append(head)
out.append("|" + "---|" * (1 + len(ranks) + len([w for w in ranks if w > 1]) + 1))
for s in strategies:
    base = step(s, ranks[0])
    cells = []
    for w in ranks:
        per_round = ", ".join(f"{by[(s, ranks[0], k)]['step_seconds'] / by[(s, w, k)]['step_seconds']:.2f}"
                              for k in rounds)
        cell = f"{total / step(s, w):.1f} ({base / step(s, w):.2f}x"
        cells.append(cell + (f"; {per_round})" if w != ranks[0] else ")"))
    shares = [f"{100 * mean_of(s, w, 'collective_share'):.1f}%" for w in ranks if w > 1]
    rss = " / ".join("[" + ", ".join(f"{m:.0f}" for m in by[(s, w, rounds[-1])]["peak_rss_mb"]) + "]"
                     for w in ranks)
    out.append(f"| {s} | " + " | ".join(cells) + " | " + " | ".join(shares) + f" | {rss} |")
out.append("")
if pairs and ("grad_accum", 1, rounds[0]) in by:
    ceilings, lockstep, shares = [], [], []
    for k in rounds:
        both = [p["step_seconds"] for p in pairs if p["round"] == k]
        alone = by[("grad_accum", 1, k)]["step_seconds"]
        ceilings.append(sum(alone / b for b in both))
        lockstep.append(len(both) * alone / max(both))
        shares += [alone / b for b in both]
    out.append(f"- The physical limit, measured in the same rounds: two independent 1-rank GradAccum trainings "
               f"at once (no communication) each ran at {min(shares):.2f}-{max(shares):.2f} of the speed of one "
               f"alone, together {statistics.median(ceilings):.2f}x "
               f"({', '.join(f'{c:.2f}' for c in ceilings)} by round): what 2 ranks on these 2 cores could reach.")
    out.append(f"- Ranks in lockstep do less: at every meeting point (each all-gather, the all-reduce) the faster "
               f"waits for the slower, so over a step they go at the slower core's pace, not the two cores' "
               f"average. The two cores of this virtual machine are not equally fast, and which is faster changes "
               f"from run to run: the slower of the two independent trainings above gives the lockstep limit, "
               f"2 x its speed, {statistics.median(lockstep):.2f}x ({', '.join(f'{c:.2f}' for c in lockstep)} "
               f"by round), before any communication.")
# What the collectives move, per rank and step (Gloo's ring algorithms).
for w in ranks:
    if w == 1:
        continue
    gathered = (w - 1) / w * total * (1 + group) * dim * 4
    whole = params * 4
    s0 = "grad_accum" if "grad_accum" in strategies else strategies[0]
    sent = mean_of(s0, w, "reduce_bytes") or whole
    out.append(f"- {w} ranks: the all-gathers bring each rank {gathered / 1e3:.0f} kB per step "
               f"((W-1)/W x {total} examples x (1 query + {group} passages) x {dim} floats, the same for every "
               f"strategy). The gradient all-reduce sums {sent / 1e6:.1f} MB a step (median, {s0}) "
               f"instead of the whole {whole / 1e6:.1f} MB ({params:,} float32): with `distributed.sparse_rows` "
               f"only the rows some rank has nonzero, and one flag per row, travel; a ring moves 2 (W-1)/W "
               f"times that. Measured for {s0}: towers {1e3 * mean_of(s0, w, 'encode_seconds'):.0f} ms "
               f"(1 rank: {1e3 * mean_of(s0, 1, 'encode_seconds'):.0f}), gather "
               f"{1e3 * mean_of(s0, w, 'gather_seconds'):.1f} ms + reduce "
               f"{1e3 * mean_of(s0, w, 'reduce_seconds'):.1f} ms of a {1e3 * step(s0, w):.0f} ms step.")
if collectives_alone and ("grad_accum", 2, rounds[0]) in by and pairs:
    gather = next(r for r in collectives_alone if r["op"] == "all_gather")
    reduces = sorted((r for r in collectives_alone if r["op"] == "all_reduce_sum"), key=lambda r: r["bytes"])
    flags, grads = reduces[0], reduces[-1]
    gathers = total // (2 * first["micro_batch"])  # one per global micro-batch of 2 x micro_batch rows
    cost = gathers * gather["median_ms"] + flags["median_ms"] + grads["median_ms"]
    step2 = 1e3 * step("grad_accum", 2)
    share = mean_of("grad_accum", 2, "collective_share")
    limit = statistics.median(lockstep)
    out.append(f"- The collectives alone (`contaccum_bench_collectives`, 2 processes doing nothing else, each "
               f"call entered by both ranks at once; medians of {gather['rounds']} calls): an all-gather of "
               f"{gather['bytes'] / 1e3:.1f} kB a rank {gather['median_ms']:.2f} ms, an all-reduce of "
               f"{flags['bytes'] / 1e3:.1f} kB (about the row flags) {flags['median_ms']:.2f} ms and of "
               f"{grads['bytes'] / 1e6:.1f} MB (about the gradients sent) {grads['median_ms']:.1f} ms "
               f"({grads['cpu_ms']:.1f} ms of it process CPU time). A GradAccum step makes {gathers} "
               f"all-gathers and those two all-reduces: {cost:.1f} ms, {100 * cost / step2:.1f}% of its 2-rank "
               f"step, which would leave {limit / (1 + cost / step2):.2f}x of the lockstep limit's {limit:.2f}x. The "
               f"collectives took {100 * share:.1f}% of the step in training: for the rest of that time a rank "
               f"waits in them for the other (at a gather only when the other is more than a micro-batch's "
               f"towers behind, with `distributed.overlap_gather`; at the all-reduce for whatever the ranks' "
               f"differences over the step add up to), or runs them while the other still computes on the "
               f"second core.")
text = "\n".join(out) + "\n"

doc = open(doc_path).read()
begin, end = "<!-- scaling:begin -->\n", "<!-- scaling:end -->"
i, j = doc.index(begin) + len(begin), doc.index(end)
open(doc_path, "w").write(doc[:i] + text + doc[j:])
print(text)
