"""The `geobench` command line: a thin Typer shell over the library.

Each command parses its options, calls one library function and prints the result
(tables on stdout, progress on stderr). Heavy libraries (torch, cv2, faiss, h5py,
matplotlib) are imported inside the commands so `geobench --help` stays instant.
User errors (GeobenchError) are printed on one line to stderr with a non-zero exit.

Where each command lives (one module per group; the shared app, `command` decorator,
option types and helpers are in `common`):

    datasets, download, prepare, doctor   geobench/cli/datasets.py
    polar, crop, mine                     geobench/cli/geometry.py
    models, train                         geobench/cli/train.py
    eval                                  geobench/cli/eval.py
    report, viz examples|attention        geobench/cli/report.py
    bench                                 geobench/cli/bench.py
    demo                                  geobench/cli/demo.py

A new command goes in its group's module (or a new module imported below) with
`@command("name", examples=[...])`, and its name in ORDER (its place in `--help`).
"""
from __future__ import annotations

from geobench.cli import bench, datasets, demo, eval, geometry, report, train  # noqa: F401
from geobench.cli.common import app

# The order `geobench --help` lists the commands in (the order of the data flow); a
# command missing here is listed after these.
ORDER = ("datasets", "download", "prepare", "polar", "crop", "mine", "models", "train", "eval",
         "report", "bench", "doctor", "demo")
app.registered_commands.sort(
    key=lambda info: ORDER.index(info.name) if info.name in ORDER else len(ORDER))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
