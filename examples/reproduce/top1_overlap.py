#!/usr/bin/env python3
"""Which judged queries two systems rank right at the top, and where they differ.

Reads two TREC run files (`contaccum eval --run`, `contaccum bm25 --run`) and
the BEIR qrels, counts the queries whose first result is relevant for both,
only one or neither, and prints a few queries that only the second system
ranks right, with both first results (texts from the corpus).

Usage: top1_overlap.py --qrels dev.tsv --corpus corpus.jsonl --queries queries.jsonl
                       --run dense.run --run bm25.run [--examples 8]
"""
import argparse
import collections
import json
import os
import random
import sys


def read_qrels(path):
    relevant = collections.defaultdict(set)
    with open(path) as f:
        next(f, None)  # header
        for number, line in enumerate(f, start=2):
            fields = line.split()
            if len(fields) < 3:
                sys.exit(f"{path}:{number}: expected query-id corpus-id score, got {line.strip()!r}")
            if float(fields[2]) > 0:
                relevant[fields[0]].add(fields[1])
    return relevant


def read_first(path):
    """The rank-1 document of every query in a TREC run file."""
    first = {}
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if len(fields) != 6:
                sys.exit(f"{path}:{number}: expected 6 TREC run fields, got {line.strip()!r}")
            if fields[3] == "1":
                first[fields[0]] = fields[2]
    return first


def read_texts(path):
    texts = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            texts.setdefault(record["_id"], record["text"])
    return texts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--run", action="append", required=True, help="twice: system A, then system B")
    parser.add_argument("--examples", type=int, default=8)
    args = parser.parse_args()
    if len(args.run) != 2:
        parser.error(f"--run must be given twice, got {len(args.run)}")
    relevant = read_qrels(args.qrels)
    a, b = (read_first(path) for path in args.run)
    counts = collections.Counter()
    only_b = []
    for query in sorted(relevant):
        right_a = a.get(query) in relevant[query]
        right_b = b.get(query) in relevant[query]
        counts[(right_a, right_b)] += 1
        if right_b and not right_a:
            only_b.append(query)
    name_a, name_b = (os.path.splitext(os.path.basename(path))[0] for path in args.run)
    print(f"judged queries: {len(relevant)}")
    print(f"first result relevant for both: {counts[(True, True)]}")
    print(f"only {name_a}: {counts[(True, False)]}")
    print(f"only {name_b}: {counts[(False, True)]}")
    print(f"neither: {counts[(False, False)]}")
    if args.examples and only_b:
        queries, corpus = read_texts(args.queries), read_texts(args.corpus)
        print(f"\nqueries only {name_b} ranks right (random sample):")
        for query in random.Random(0).sample(only_b, min(args.examples, len(only_b))):
            print(f"- {queries.get(query, query)!r}")
            print(f"  {name_b}: {b[query]}: {corpus.get(b[query], '')[:100]!r}")
            print(f"  {name_a}: {a.get(query)}: {corpus.get(a.get(query), '')[:100]!r}")


if __name__ == "__main__":
    main()
