"""Writes the data-parallel scaling table into docs/DISTRIBUTED.md.

Usage: python3 bench/distributed/report.py RESULTS.jsonl DOC.md
Replaces what lies between the markers <!-- scaling:begin --> and
<!-- scaling:end --> in DOC.md.
"""
import json
import sys

results_path, doc_path = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(results_path) if line.strip()]
by = {(r["strategy"], r["ranks"]): r for r in rows}
strategies = list(dict.fromkeys(r["strategy"] for r in rows))
ranks = sorted({r["ranks"] for r in rows})
first = rows[0]
params = first.get("parameters", 0)
total, dim, group = first["total_batch"], first["dim"], first["group"]

out = []
out.append(f"Measured by `bash bench/distributed/run.sh` ({first['machine']}; each rank 1 thread; "
           f"a 2-layer BERT, 128 wide, {params:,} parameters in both towers; total batch {total}, micro-batch "
           f"{first['micro_batch']} per rank, {group - 1} hard negative(s), banks of {first['memory_size']}; "
           f"medians of {first['timed_steps']} steps after 4 untimed).")
out.append("")
head = "| strategy | " + " | ".join(f"{w} rank{'s' if w > 1 else ''}: examples/s (x1 rank)" for w in ranks)
head += " | " + " | ".join(f"{w}: collectives" for w in ranks if w > 1) + " | peak RSS per rank, MB |"
out.append(head)
out.append("|" + "---|" * (1 + len(ranks) + len([w for w in ranks if w > 1]) + 1))
for s in strategies:
    base = by[(s, ranks[0])]["examples_per_second"]
    cells = []
    for w in ranks:
        r = by[(s, w)]
        cells.append(f"{r['examples_per_second']:.1f} ({r['examples_per_second'] / base:.2f}x)")
    shares = [f"{100 * by[(s, w)]['collective_share']:.1f}%" for w in ranks if w > 1]
    rss = " / ".join(
        "[" + ", ".join(f"{m:.0f}" for m in by[(s, w)]["peak_rss_mb"]) + "]" for w in ranks)
    out.append(f"| {s} | " + " | ".join(cells) + " | " + " | ".join(shares) + f" | {rss} |")
out.append("")
# What the collectives move, per rank and step (Gloo's ring algorithms).
lines = []
for w in ranks:
    if w == 1:
        continue
    gathered = (w - 1) / w * total * (1 + group) * dim * 4
    whole = params * 4
    r = by[(strategies[0], w)]
    sent = r.get("reduce_bytes", whole)
    lines.append(f"- {w} ranks: the all-gathers bring each rank {gathered / 1e3:.0f} kB per step "
                 f"((W-1)/W x {total} examples x (1 query + {group} passages) x {dim} floats, the same for every "
                 f"strategy). The gradient all-reduce sums {sent / 1e6:.1f} MB a step (median, {strategies[0]}) "
                 f"instead of the whole {whole / 1e6:.1f} MB ({params:,} float32): with `distributed.sparse_rows` "
                 f"only the rows some rank has nonzero, and one flag per row, travel; a ring moves 2 (W-1)/W "
                 f"times that. Measured for {strategies[0]}: gather "
                 f"{1e3 * r['gather_seconds']:.1f} ms + reduce {1e3 * r['reduce_seconds']:.1f} ms of a "
                 f"{1e3 * r['step_seconds']:.0f} ms step.")
out.extend(lines)
text = "\n".join(out) + "\n"

doc = open(doc_path).read()
begin, end = "<!-- scaling:begin -->\n", "<!-- scaling:end -->"
i, j = doc.index(begin) + len(begin), doc.index(end)
open(doc_path, "w").write(doc[:i] + text + doc[j:])
print(text)
