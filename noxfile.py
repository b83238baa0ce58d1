"""nox sessions: the same commands the README and CI use.

torch is installed first from the pinned CPU build (see README, "Choosing the torch
build") so no session pulls CUDA wheels on a CPU-only machine.
"""
import shutil

import nox
from nox.command import CommandFailed

TORCH = "torch==2.13.0"
nox.options.sessions = ["tests", "lint"]


def install(session: nox.Session, extras: str = "") -> None:
    session.install(TORCH)
    session.install("-e", f".{extras}")


@nox.session
def tests(session: nox.Session) -> None:
    install(session, "[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    install(session)
    session.run("geobench", "demo", "--out", "geobench-demo", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "geobench", "tests", "benchmarks", "noxfile.py")


# The synthetic accuracy benchmark: fixed seeds, tiny preset, a few CPU minutes. The same
# commands produced benchmarks/baseline/accuracy.csv (see benchmarks/README.md); the run
# folder's name is the `run` column of metrics.csv, so keep ACCURACY_RUN as it is.
ACCURACY_MODEL, ACCURACY_RUN = "safa", "synthetic-safa-tiny"
ACCURACY_DATA = ["--pairs", "400", "--test-pairs", "100", "--seed", "0", "--difficulty", "easy"]
ACCURACY_TRAIN = ["--preset", "tiny", "--seed", "0", "--epochs", "12", "--batch-size", "32",
                  "--lr", "1e-3", "--eval-every", "0", "--workers", "0", "--device", "cpu"]
ACCURACY_TOLERANCE_PTS = "10"


@nox.session
def bench(session: nox.Session) -> None:
    """CI benchmark job: quick speed ratios + synthetic accuracy, checked against baselines.

    Fails on a regression in either (benchmarks/baseline/bench.csv, accuracy.csv).

    `nox -s bench -- DIR` writes the measurements under DIR (default bench-out).
    """
    install(session)
    out = session.posargs[0] if session.posargs else "bench-out"
    failed = []
    try:  # speed: ratios against floors measured in the same run, on one thread as the
        # baseline was (steady on shared runners, comparable across core counts); a row
        # fails only beyond its factor and its measured noise, confirmed by a re-measurement
        session.run("geobench", "bench", "all", "--quick", "--quiet", "--threads", "1",
                    "--out", f"{out}/speed", "--check", "benchmarks/baseline/bench.csv")
    except CommandFailed:
        failed.append("speed (see the regression table above)")
    try:  # accuracy: the synthetic world, a tiny model, fixed seeds
        data, run = f"{out}/accuracy/data", f"{out}/accuracy/{ACCURACY_RUN}"
        shutil.rmtree(f"{out}/accuracy", ignore_errors=True)  # a fresh world and run each time
        session.run("geobench", "prepare", "synthetic", "--quiet", "--out", data, *ACCURACY_DATA)
        session.run("geobench", "train", ACCURACY_MODEL, "--quiet", "--data", data, "--out", run,
                    *ACCURACY_TRAIN)
        session.run("geobench", "eval", run, "--quiet", "--data", data, "--split", "test")
        session.run("geobench", "report", run, "--table", "--check",
                    "benchmarks/baseline/accuracy.csv", "--tolerance", ACCURACY_TOLERANCE_PTS)
    except CommandFailed:
        failed.append("accuracy (see the report check above)")
    if failed:
        session.error(f"benchmark regression: {'; '.join(failed)}")


# Mutation testing (issue 18): not per-commit CI; run it after changing one of the modules
# whose correctness decides published numbers, then commit benchmarks/mutation/*.csv.
MUTMUT = "mutmut>=3.8,<3.9"  # the score script reads this release's result files


@nox.session
def mutants(session: nox.Session) -> None:
    """mutmut over the modules in [tool.mutmut] (pyproject.toml) against their fast tests.

    `nox -s mutants` runs all eleven modules (about 5,000 mutants, two workers);
    `nox -s mutants -- polar mining` only those (names in benchmarks/mutation_score.py).
    Writes benchmarks/mutation/scores.csv (per module and date) and survivors.csv.
    """
    install(session, "[test]")
    session.install(MUTMUT)
    modules = list(session.posargs)
    globs = session.run("python", "benchmarks/mutation_score.py", "--globs", *modules,
                        silent=True).split()
    # mutmut copies unmutated files once and keeps them: start from a fresh copy so the
    # run sees today's code
    shutil.rmtree("mutants", ignore_errors=True)
    session.run("mutmut", "run", "--max-children", "2", *globs,
                env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    session.run("python", "benchmarks/mutation_score.py", *modules)


@nox.session
def semantic(session: nox.Session) -> None:
    """Hand-written plausible mistakes (issue 28), one patch each, against their covering tests.

    `nox -s semantic` runs every mutant in benchmarks/mutation/semantic/catalogue.csv;
    `nox -s semantic -- 001 007` only those (no score line). Each mutant runs in a clean copy
    of the tracked files; writes the catalogue's status column, results.csv and scores.csv.
    """
    install(session, "[test]")
    session.run("python", "benchmarks/mutation/semantic/run.py", *session.posargs,
                env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
