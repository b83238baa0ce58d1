"""Mutation score of the modules that decide published numbers (`nox -s mutants`).

    python benchmarks/mutation_score.py --globs [MODULE ...]   # mutmut name patterns
    python benchmarks/mutation_score.py [MODULE ...]           # score the last mutmut run

Reads mutmut's results under mutants/ and writes, for each MODULE run (default: all):
- benchmarks/mutation/scores.csv: one row per module and date (a re-run the same day
  replaces its row): mutants, killed (timeouts count: the tests caught a hang), survived,
  no_tests, equivalent and score_pct = killed / (mutants - equivalent) * 100;
- benchmarks/mutation/survivors.csv: every surviving mutant with its changed line, and the
  reason when it is listed as equivalent.

An equivalent mutant cannot change any observable result (e.g. a dtype that numpy infers
anyway); benchmarks/mutation/equivalent.csv lists them by function and mutated line, not
by mutmut's number, so the list survives edits elsewhere in the file.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "mutation"

# module name -> the files mutated for it (as mutmut names them, without ".py")
MODULES = {
    "polar": ["geobench.geometry.polar"],
    "gps": ["geobench.geometry.gps"],
    "radius": ["geobench.geometry.radius"],
    "mining": ["geobench.mining"],
    "losses": ["geobench.losses"],
    "cvusa": ["geobench.datasets.cvusa"],
    "vigor": ["geobench.datasets.vigor"],
    "metrics": ["geobench.eval.metrics"],
    "protocols": ["geobench.eval.protocols"],
    "retrieval": ["geobench.eval.search", "geobench.eval.plan", "geobench.eval.csr"],
    "blocks": ["geobench.eval.blocks"],
}
KILLED = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout",
          152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault"}
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests"}


def pick(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        sys.exit(f"unknown module {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    return names or list(MODULES)


def statuses(module: str) -> dict[str, tuple[int | None, str]]:
    """mutant name -> (mutmut exit code, source file), for every file of the module."""
    out: dict[str, tuple[int | None, str]] = {}
    for dotted in MODULES[module]:
        source = dotted.replace(".", "/") + ".py"
        meta = ROOT / "mutants" / (source + ".meta")
        if not meta.is_file():
            sys.exit(f"{meta}: no mutmut results for {module}; run `nox -s mutants -- {module}`")
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        out.update({name: (code, source) for name, code in codes.items()})
    return out


def changed_line(name: str, source: str) -> tuple[str, str]:
    """(function, first changed line of the mutant) from mutmut's own diff."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=source)
    added = [ln[1:].strip() for ln in diff.splitlines()
             if ln.startswith("+") and not ln.startswith("+++")]
    function = name.rsplit("__mutmut_", 1)[0]
    return function, (added[0] if added else "(line removed)")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--globs"]:
        print(" ".join(f"{f}.*" for m in pick(argv[1:]) for f in MODULES[m]))
        return
    import os

    os.chdir(ROOT)  # mutmut's helpers read pyproject.toml and mutants/ from here
    modules = pick(argv)
    equivalent = {}
    with open(OUT / "equivalent.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            equivalent[(row["function"], row["mutated_line"])] = row["reason"]
    today = dt.date.today().isoformat()
    rows, survivors, unused = [], [], set(equivalent)
    for module in modules:
        found = statuses(module)
        codes = {name: code for name, (code, _) in found.items()}
        missing = [n for n, c in codes.items() if c is None]
        if missing:
            sys.exit(f"{len(missing)} {module} mutants were not run (e.g. {missing[0]}); "
                     f"run `nox -s mutants -- {module}` to the end")
        killed = sum(c in KILLED for c in codes.values())
        counts = {"survived": 0, "no tests": 0, "equivalent": 0}
        for name, code in sorted(codes.items()):
            if code in KILLED:
                continue
            function, line = changed_line(name, found[name][1])
            reason = equivalent.get((function, line), "")
            unused.discard((function, line))
            status = "equivalent" if reason else SURVIVED.get(code, f"exit {code}")
            counts[status if status in counts else "survived"] += 1
            survivors.append({"module": module, "mutant": name, "status": status,
                              "mutated_line": line, "reason": reason})
        scored = len(codes) - counts["equivalent"]
        rows.append({"date": today, "module": module, "tool": "mutmut", "mutants": len(codes),
                     "killed": killed, "survived": counts["survived"],
                     "no_tests": counts["no tests"], "equivalent": counts["equivalent"],
                     "score_pct": f"{100.0 * killed / max(scored, 1):.1f}"})
    write_scores(rows, today)
    write_survivors(survivors, modules)
    for r in rows:
        print(f"{r['module']:10s} {r['killed']:5d} killed of {r['mutants'] - r['equivalent']:5d} "
              f"non-equivalent ({r['score_pct']} %); {r['survived']} survived, "
              f"{r['no_tests']} without tests, {r['equivalent']} equivalent")
    listed = {m for m in modules for f in MODULES[m]
              if any(k[0].startswith(f + ".") for k in unused)}
    if listed:
        print(f"note: equivalent.csv has entries no survivor matched in {', '.join(sorted(listed))}"
              f" (killed now, or the line changed)")


def write_scores(rows: list[dict], today: str) -> None:
    path = OUT / "scores.csv"
    old = list(csv.DictReader(open(path, newline="", encoding="utf-8"))) if path.is_file() else []
    done = {(r["date"], r["module"]) for r in rows}
    keep = [r for r in old if (r["date"], r["module"]) not in done]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(sorted(keep + rows, key=lambda r: (r["date"], r["module"])))


def write_survivors(survivors: list[dict], modules: list[str]) -> None:
    path = OUT / "survivors.csv"
    old = list(csv.DictReader(open(path, newline="", encoding="utf-8"))) if path.is_file() else []
    keep = [r for r in old if r["module"] not in modules]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["module", "mutant", "status", "mutated_line", "reason"])
        w.writeheader()
        w.writerows(sorted(keep + survivors, key=lambda r: (r["module"], r["mutant"])))


if __name__ == "__main__":
    main(sys.argv[1:])
