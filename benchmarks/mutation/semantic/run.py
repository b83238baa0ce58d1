"""Semantic mutation runner (issue 28): hand-written plausible mistakes, one patch each.

Each row of catalogue.csv names a patch NNN-*.patch in this folder and the tests that cover
it. For each mutant the repository's tracked files (as they are in the work tree) are copied
to a fresh temporary folder, the patch is applied there with `git apply`, and the covering
tests run in that copy with this interpreter, PYTHONPATH pointing at the copy (checked: the
copy's geobench must be the one imported). A mutant is killed when the tests fail, survived
when they pass, stale when its patch no longer applies (not counted as survived).

    python benchmarks/mutation/semantic/run.py              # every mutant
    python benchmarks/mutation/semantic/run.py 001 007      # only these ids, in this order
    python benchmarks/mutation/semantic/run.py --score 001 007   # ... and record the score
    python benchmarks/mutation/semantic/run.py --no-score   # do not append to scores.csv

Writes the status column of catalogue.csv (a row marked equivalent stays equivalent while it
survives; if it is killed the claim was wrong and it becomes killed), results.csv (this run,
per mutant) and appends one line to scores.csv.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FIELDS = ["id", "package", "file", "mistake_class", "description", "tests", "status", "reason"]


def tracked_copy(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if not src.is_file():  # deleted in the work tree, or a submodule
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)


def patch_for(mid: str) -> Path:
    found = sorted(HERE.glob(f"{mid}-*.patch"))
    if len(found) != 1:
        raise SystemExit(f"catalogue.csv: mutant {mid} needs exactly one {mid}-*.patch in {HERE}, "
                         f"found {len(found)}")
    return found[0]


def child_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_import(copy: Path) -> None:
    """The copy's geobench, not the editable install's, must be the one the tests import."""
    got = subprocess.run([sys.executable, "-c", "import geobench; print(geobench.__file__)"],
                         cwd=copy, env=child_env(copy), capture_output=True, text=True,
                         check=True).stdout.strip()
    if not Path(got).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"run.py: the tests would import geobench from {got}, not from the "
                         f"mutated copy {copy}; fix PYTHONPATH handling before trusting a score")


def run_one(row: dict, timeout: float) -> tuple[str, float]:
    patch = patch_for(row["id"])
    with tempfile.TemporaryDirectory(prefix=f"semantic-{row['id']}-") as tmp:
        copy = Path(tmp)
        tracked_copy(copy)
        applied = subprocess.run(["git", "apply", str(patch)], cwd=copy, capture_output=True,
                                 text=True)
        if applied.returncode:
            return "stale", 0.0
        check_import(copy)
        tests = row["tests"].split()
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
        t0 = time.monotonic()
        try:
            res = subprocess.run(cmd, cwd=copy, env=child_env(copy), capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", time.monotonic() - t0
        took = time.monotonic() - t0
        if res.returncode in (0,):
            return "survived", took
        if res.returncode in (1,):
            return "killed", took
        # 2-5: interrupted, internal error, usage error, no tests collected: the row is wrong
        tail = (res.stdout + res.stderr)[-600:]
        raise SystemExit(f"catalogue.csv: mutant {row['id']}: pytest exited {res.returncode} "
                         f"(not a test failure) for {' '.join(tests)}:\n{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ids", nargs="*", help="mutant ids to run (default: all)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    ap.add_argument("--no-score", action="store_true", help="do not append to scores.csv")
    ap.add_argument("--score", action="store_true",
                    help="append to scores.csv even for a subset of ids (marked 'subset')")
    args = ap.parse_args()
    cat = HERE / "catalogue.csv"
    with cat.open(newline="") as f:
        rows = list(csv.DictReader(f))
    by_id = {r["id"]: r for r in rows}
    unknown = sorted(set(args.ids) - set(by_id))
    if unknown:
        raise SystemExit(f"run.py: unknown ids {unknown}")
    chosen = [by_id[i] for i in args.ids] if args.ids else rows  # in the order given
    results = []
    for row in chosen:
        status, took = run_one(row, args.timeout)
        claimed = row["status"]
        if status == "survived" and claimed == "equivalent":
            status = "equivalent"
        elif status == "timeout":
            status = "killed"  # an infinite loop is a failure a user would notice
        if status != "stale":
            row["status"] = status
        results.append((row["id"], status, round(took, 1)))
        print(f"{row['id']} {status:10s} {took:6.1f}s  {row['description']}", flush=True)
        with cat.open("w", newline="") as f:  # after each mutant: a stopped run keeps its results
            w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    with (HERE / "results.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "status", "seconds"])
        w.writerows(results)
    n = sum(s != "stale" for _, s, _ in results)
    killed = sum(s == "killed" for _, s, _ in results)
    equiv = sum(s == "equivalent" for _, s, _ in results)
    stale = sum(s == "stale" for _, s, _ in results)
    score = 100.0 * killed / (n - equiv) if n - equiv else 0.0
    print(f"mutants {n} (+{stale} stale), killed {killed}, equivalent {equiv}, "
          f"survived {n - killed - equiv}: score {score:.1f} %")
    if args.no_score or (args.ids and not args.score):
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    scores = HERE / "scores.csv"
    new = not scores.exists()
    with scores.open("a", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if new:
            w.writerow(["date", "commit", "run", "n", "killed", "equivalent", "stale", "score_pct"])
        run = f"subset of {len(rows)}" if args.ids else "all"
        w.writerow([dt.date.today().isoformat(), commit, run, n, killed, equiv, stale,
                    f"{score:.1f}"])


if __name__ == "__main__":
    main()
