"""nox sessions: the same commands the README and CI use.

torch is installed first from the pinned CPU build (see README, "Choosing the torch
build") so no session pulls CUDA wheels on a CPU-only machine.
"""
import nox

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


@nox.session
def bench(session: nox.Session) -> None:
    """The CI benchmark job: quick benchmarks + synthetic accuracy, checked against baselines."""
    install(session)
    session.run("geobench", "bench", "all", "--quick", "--out", "bench", "--check",
                "benchmarks/baseline/bench.csv", *session.posargs)
