"""Batch statistics of Sample4Geo's official shuffle, for geobench's sampler to match.

Runs the `shuffle` method of the official CVUSADatasetTrain (Skyy93/Sample4Geo,
sample4geo/dataset/cvusa.py, read from a checkout and executed as it is, with tqdm and
the progress pause stubbed) on a fixed GPS table, over many seeded epochs, and writes
what matters for a batch's composition:

    python benchmarks/make_sampler_golden.py --sample4geo /path/to/Sample4Geo \\
        [--out tests/fixtures/sampler_golden.json]

The world: 2,000 places at random positions in a 5 km square; each place's candidates
are its `range` nearest others (Sample4Geo's gps_dict, TOP_K). Statistics per epoch
(averaged): batches; per batch, the share of members that are among the first
select / 2 candidates of another member (the near half) and among the `range`
candidates of another member, and the number of groups (members that are no other
member's candidate: the anchors). tests/test_sampler_golden.py runs geobench's
PairBatchSampler on the same table and compares. The statistics are computed here
and in the test by the same function (`batch_stats`).
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sampler_golden.json"
N_PLACES, BATCH, SELECT, RANGE, EPOCHS = 2000, 32, 16, 32, 20


def world() -> np.ndarray:
    """(N, RANGE) candidate table: each place's RANGE nearest other places."""
    xy = np.random.default_rng(11).random((N_PLACES, 2)) * 5000.0
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :RANGE]


def batch_stats(batches: list[list[int]], table: np.ndarray, select: int) -> dict[str, float]:
    near = [set(row[: select // 2].tolist()) for row in table]
    full = [set(row.tolist()) for row in table]
    near_share, range_share, groups = [], [], []
    for batch in batches:
        members = set(batch)
        in_near = [any(m in near[o] for o in members if o != m) for m in batch]
        in_range = [any(m in full[o] for o in members if o != m) for m in batch]
        near_share.append(np.mean(in_near))
        range_share.append(np.mean(in_range))
        groups.append(sum(not r for r in in_range))
    return {"batches": float(len(batches)), "near_share": float(np.mean(near_share)),
            "range_share": float(np.mean(range_share)), "anchors_per_batch": float(np.mean(groups))}


def official_shuffle(repo: Path):
    """The official method, taken from the file as it is."""
    source = (repo / "sample4geo" / "dataset" / "cvusa.py").read_text()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CVUSADatasetTrain")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "shuffle")
    module = ast.Module(body=[fn], type_ignores=[])
    stub_tqdm = lambda *a, **k: SimpleNamespace(update=lambda *a: None, close=lambda: None)  # noqa: E731
    scope = {"copy": copy, "random": random, "tqdm": stub_tqdm,
             "time": SimpleNamespace(sleep=lambda s: None), "print": lambda *a, **k: None}
    exec(compile(module, str(repo / "sample4geo/dataset/cvusa.py"), "exec"), scope)
    return scope["shuffle"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample4geo", type=Path, required=True, help="a Skyy93/Sample4Geo checkout")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    shuffle = official_shuffle(args.sample4geo)
    table = world()
    # Sample4Geo's ids are labels; 0 is skipped as a neighbour (`and idx_near`), so ids start at 1.
    sim_dict = {i + 1: [int(j) + 1 for j in row] for i, row in enumerate(table)}
    per_epoch = []
    for epoch in range(EPOCHS):
        random.seed(epoch)
        ds = SimpleNamespace(train_ids=list(range(1, N_PLACES + 1)), shuffle_batch_size=BATCH)
        shuffle(ds, sim_dict=sim_dict, neighbour_select=SELECT, neighbour_range=RANGE)
        flat = [i - 1 for i in ds.samples]
        batches = [flat[k:k + BATCH] for k in range(0, len(flat), BATCH)]
        per_epoch.append(batch_stats(batches, table, SELECT))
    stats = {k: float(np.mean([e[k] for e in per_epoch])) for k in per_epoch[0]}
    spread = {k: float(np.std([e[k] for e in per_epoch])) for k in per_epoch[0]}
    out = {"format": "geobench-sampler-golden/1", "source": "Skyy93/Sample4Geo CVUSADatasetTrain.shuffle",
           "n_places": N_PLACES, "batch": BATCH, "neighbour_select": SELECT, "neighbour_range": RANGE,
           "epochs": EPOCHS, "mean": stats, "sd": spread}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
