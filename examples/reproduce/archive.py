"""Keeps the record of finished reproduction runs in the repository.

A run's record is what report.py reads: `dev.json` (the evaluation, stamped
with method, seed and wall time by run.sh), `train.json` (the CLI's summary)
and `run/metrics.jsonl` (every step), stored gzipped; no model, no
checkpoint. run.sh restores the archive into its output directory before it
starts, so archived runs count as finished and are not trained again, and
archives every finished run at the end. A study too long for one sitting
(the bank staleness study takes hours on two cores) is thus completed over
several, and RESULTS.md can always be regenerated from committed records.

Usage: python3 archive.py save|restore --runs build/reproduce --archive examples/reproduce/runs [--run METHOD/seedN]
"""
import argparse
import glob
import gzip
import json
import os
import shutil


def _write_atomic(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"  # run.sh's parallel runs may save at once
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _gzipped(path):
    with open(path, "rb") as f:
        # mtime 0: the same metrics give the same bytes, so git sees no change.
        return gzip.compress(f.read(), compresslevel=9, mtime=0)


def save(runs, archive, only=None):
    saved = 0
    pattern = os.path.join(runs, only, "dev.json") if only else os.path.join(runs, "*", "seed*", "dev.json")
    for dev in sorted(glob.glob(pattern)):
        run_dir = os.path.dirname(dev)
        rel = os.path.relpath(run_dir, runs)
        metrics = os.path.join(run_dir, "run", "metrics.jsonl")
        target = os.path.join(archive, rel)
        if not os.path.exists(metrics):
            continue  # restored from the archive without its metrics, or not a training run
        json.load(open(dev))  # a damaged record is not archived
        os.makedirs(target, exist_ok=True)
        with open(dev, "rb") as f:
            record = f.read()
        old = os.path.join(target, "dev.json")
        if os.path.exists(old) and open(old, "rb").read() == record:
            continue
        _write_atomic(os.path.join(target, "metrics.jsonl.gz"), _gzipped(metrics))
        summary = os.path.join(run_dir, "train.json")
        if os.path.exists(summary):
            shutil.copyfile(summary, os.path.join(target, "train.json"))
        _write_atomic(old, record)  # last: its presence marks a complete record
        saved += 1
    print(f"archive.py: {saved} run(s) archived in {archive}")


def restore(runs, archive):
    restored = 0
    for dev in sorted(glob.glob(os.path.join(archive, "*", "seed*", "dev.json"))):
        record_dir = os.path.dirname(dev)
        rel = os.path.relpath(record_dir, archive)
        run_dir = os.path.join(runs, rel)
        if os.path.exists(os.path.join(run_dir, "dev.json")):
            continue
        json.load(open(dev))
        shutil.rmtree(run_dir, ignore_errors=True)  # a run stopped part-way: the record replaces it
        os.makedirs(os.path.join(run_dir, "run"))
        with gzip.open(os.path.join(record_dir, "metrics.jsonl.gz"), "rb") as f:
            _write_atomic(os.path.join(run_dir, "run", "metrics.jsonl"), f.read())
        summary = os.path.join(record_dir, "train.json")
        if os.path.exists(summary):
            shutil.copyfile(summary, os.path.join(run_dir, "train.json"))
        shutil.copyfile(dev, os.path.join(run_dir, "dev.json"))  # last, as in save
        restored += 1
    print(f"archive.py: {restored} run(s) restored from {archive}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["save", "restore"])
    ap.add_argument("--runs", required=True)
    ap.add_argument("--archive", required=True)
    ap.add_argument("--run", help="save only this run (METHOD/seedN)")
    args = ap.parse_args()
    if args.action == "save":
        save(args.runs, args.archive, args.run)
    else:
        restore(args.runs, args.archive)


if __name__ == "__main__":
    main()
