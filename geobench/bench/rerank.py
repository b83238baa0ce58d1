"""Benchmark: ASA-VG shortlist re-ranking throughput against the global search alone.

Per query, `geobench eval --rerank K` adds to the global search (embed the query, exact
search of the reference descriptors) the model's aligned score of its K best references:
their feature maps, one FFT correlation and one aggregator pass per pair. The floor is
the global search alone on the same images (tiny preset, files on disk as in `eval`), so
the ratio is the share of the query throughput that re-ranking keeps, for K = 10 and 50.
Rows carry stage "models"; the reference gallery is embedded once, outside the timing.
"""
from __future__ import annotations

from typing import Any

from geobench.bench import bench_threads, interleaved, make_row, selected

STAGE = "models"
KS = (10, 50)
SIZES = {True: (8, 60), False: (64, 400)}  # quick?: (queries, references)
TARGET = ">="  # direction only: re-ranking costs what the K pair scores cost, no published bound


def _images(root: Any, view: str, size: tuple[int, int], n: int, seed: int) -> list[str]:
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    (root / view).mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = root / view / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        paths.append(str(path))
    return paths


def run(quick: bool) -> list[dict]:
    import tempfile
    from pathlib import Path

    import torch

    from geobench.eval.csr import CSR
    from geobench.eval.search import search
    from geobench.models import build_model
    from geobench.train.data import ViewSource
    from geobench.train.embed import embed_paths
    from geobench.train.pairscore import ImagePairScorer, ImageSet

    nq, nr = SIZES[quick]
    if not any(selected(f"asavg tiny re-rank top {k} (Nq={nq}, Nr={nr}) cpu") for k in KS):
        return []  # a narrowed run (--rows) wants none of these rows
    torch.set_num_threads(bench_threads())
    torch.manual_seed(0)
    model = build_model("asavg", preset="tiny").eval()
    card = model.card
    q_src = ViewSource(card.query_view, card.query_view)
    r_src = ViewSource(card.reference_view, card.reference_view)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        queries = _images(root, card.query_view, card.input_size[card.query_view], nq, 0)
        refs = _images(root, card.reference_view, card.input_size[card.reference_view], nr, 1)
        gallery = embed_paths(model, refs, r_src, batch_size=32)
        positives = CSR.from_lists([[i % nr] for i in range(nq)])
        scorer = ImagePairScorer(model, ImageSet(queries, q_src), ImageSet(refs, r_src),
                                 batch_size=32)

        def global_search() -> Any:
            q = embed_paths(model, queries, q_src, batch_size=32)
            return search(q, gallery, positives, k=max(KS), progress="")

        def reranked(k: int):
            def go() -> None:
                scorer(global_search().topk_indices[:, :k])
            return go

        fns = {"floor": global_search, **{f"k{k}": reranked(k) for k in KS}}
        best = interleaved(fns, repeat=1 if quick else 5)
        for k in KS:
            case = f"asavg tiny re-rank top {k} (Nq={nq}, Nr={nr}) cpu"
            rows.append(make_row(STAGE, case, "query throughput", nq / best[f"k{k}"],
                                 nq / best["floor"], "queries/s", TARGET,
                                 floor_is="embed queries + exact global search",
                                 threads=bench_threads()))
    return rows
