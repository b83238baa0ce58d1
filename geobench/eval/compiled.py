"""The CPU engine with compiled passes (numba), and the choice between it and numpy's.

Per block: the numpy (BLAS) product, then ONE compiled pass over the scores that counts
them against each row's rank band and collects top-K candidates (`geobench.eval.kernel`);
only the band members go on to exact re-scoring. The numpy passes
(`geobench.eval.blocks.NumpyEngine`) stay as the fallback where numba is missing, and
either can be asked for: `SearchOptions(passes=...)` or the environment variable
GEOBENCH_SEARCH_PASSES (numba | numpy), which tests use to run both.
"""
from __future__ import annotations

import importlib
import os

import numpy as np

from geobench.errors import UsageError
from geobench.eval.blocks import NumpyEngine, TopK, TorchEngine
from geobench.eval.plan import BlockPlan

PASSES = ("auto", "numba", "numpy")
ENV = "GEOBENCH_SEARCH_PASSES"


def resolve_passes(backend: str, passes: str) -> str:
    """The passes a search runs: "torch" on the torch backend; on numpy, "numba" when
    asked for or available (auto), else "numpy". The environment variable decides auto."""
    if passes not in PASSES:
        raise UsageError(f"unknown search passes {passes!r}; use auto, numba or numpy")
    if backend != "numpy":
        return backend
    if passes == "auto":
        env = os.environ.get(ENV, "").strip().lower()
        if env and env not in PASSES:
            raise UsageError(f"{ENV}={env!r}: use auto, numba or numpy")
        passes = env or "auto"
    if passes == "numpy":
        return "numpy"
    try:
        importlib.import_module("geobench.eval.kernel")  # numba loads; nothing compiles
    except ImportError as exc:
        if passes == "numba":
            raise UsageError(f"the compiled search passes need numba ({exc}); install it "
                             f"with `pip install numba`, or set {ENV}=numpy") from None
        return "numpy"
    return "numba"


class CompiledEngine(NumpyEngine):
    """NumpyEngine's product and top-K buffers, with the compiled pass after each product."""

    def __init__(self, query: np.ndarray, reference: np.ndarray, plan: BlockPlan,
                 memory_bytes: int) -> None:
        from geobench.eval import kernel

        self.query, self.reference, self.plan = query, reference, plan
        self._scores = np.empty(plan.block_queries * plan.block_references, dtype=np.float32)
        self._kernel = kernel.block_pass
        self.top = TopK(0, 0)

    def process(self, s: np.ndarray, r0: int, ranks) -> None:
        top = self.top
        live = np.asarray(ranks.live, dtype=np.int64)
        rows, cols, slots = self._kernel(s, r0, ranks.lo, ranks.hi, live, ranks.above,
                                         top.k, top.vals, top.idx, top.fill, top.thr)
        for j in ranks.live:
            sel = slots == j
            if sel.any():
                ranks.resolve(rows[sel], cols[sel], j)


def make_engine(name: str, device: str, query: np.ndarray, reference: np.ndarray,
                plan: BlockPlan, memory_bytes: int) -> NumpyEngine | TorchEngine:
    """The engine of one search worker: torch, compiled or numpy passes (plan.passes)."""
    if name != "numpy":
        return TorchEngine(query, reference, plan, memory_bytes)
    if plan.passes == "numba":
        return CompiledEngine(query, reference, plan, memory_bytes)
    return NumpyEngine(query, reference, plan, memory_bytes)
