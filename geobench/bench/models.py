"""Benchmark: model throughput and memory, each against its own backbone as the floor.

For every registered model at its tiny preset and at paper size: forward (eval, no grad)
and forward+backward (train, in-batch soft-margin loss) images/s, and the peak memory of
one training step (what the step adds to the built model). The floor is the same model's
backbone(s) alone on the same images, so the ratio is the cost of what the paper adds
(attention, alignment, aggregation) and stays meaningful on a loaded machine. On a GPU the same rows are measured with CUDA, AMP
(float16 autocast) and channels-last.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from geobench.bench import MB, bench_threads, interleaved, make_row, peak_rss_subprocess, selected

STAGE = "models"
# What a model may cost over its bare backbone (throughput ratio >= , memory ratio <=).
FWD_TARGET, TRAIN_TARGET, MEM_TARGET = ">=0.5", ">=0.4", "<=2.5"


def _inputs(model: Any, batch: int, device: str, channels_last: bool):
    import torch

    card = model.card
    g = torch.Generator().manual_seed(0)
    out = []
    for view in (card.query_view, card.reference_view):
        x = torch.randn(batch, 3, *card.input_size[view], generator=g).to(device)
        out.append(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    return out


def _backbone_of(model: Any, view: str) -> Any:
    if hasattr(model, "tower"):
        return model.tower(model.branch(view)).backbone
    return model.backbone


def _full(model: Any, q: Any, r: Any) -> Any:
    dq, dr = model(q, r)
    return dq, dr


def _bare(model: Any, q: Any, r: Any) -> Any:
    card = model.card
    return _backbone_of(model, card.query_view)(q), _backbone_of(model, card.reference_view)(r)


def _loss(outs: Any) -> Any:
    import torch.nn.functional as F

    a, b = (o.flatten(1).float() for o in outs)
    if a.shape[1] != b.shape[1]:  # bare backbones of two views: maps of different sizes
        return a.square().mean() + b.square().mean()
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t()
    return F.softplus(10 * (sim - sim.diagonal()[:, None])).mean()


def _step_fn(model: Any, run: Callable, q: Any, r: Any, train: bool, amp: bool) -> Callable[[], None]:
    import torch

    def autocast():
        if amp:
            return torch.autocast(q.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def forward() -> None:
        with torch.no_grad(), autocast():
            run(model, q, r)
        if q.is_cuda:
            torch.cuda.synchronize()

    def train_step() -> None:
        with autocast():
            loss = _loss(run(model, q, r))
        loss.backward()
        model.zero_grad(set_to_none=True)
        if q.is_cuda:
            torch.cuda.synchronize()

    return train_step if train else forward


def train_step_peak(name: str, preset: str | None, batch: int, bare: bool) -> tuple[float, bool]:
    """Bytes one training step adds on top of the built model and its inputs, and whether
    the peak could be reset (child-process memory probe; imports and build not counted)."""
    import gc

    import torch

    from geobench.bench import peak_during
    from geobench.models import build_model

    torch.manual_seed(0)
    model = build_model(name, preset=preset).train()
    q, r = _inputs(model, batch, "cpu", False)
    gc.collect()
    with peak_during() as mem:
        _step_fn(model, _bare if bare else _full, q, r, True, False)()
    return float(mem.added), mem.exact


def _case(name: str, preset: str | None, model: Any, batch: int, device: str) -> str:
    sizes = ", ".join(f"{v} {h}x{w}" for v, (h, w) in model.card.input_size.items())
    return f"{name} {preset or 'paper'} ({sizes}) b={batch} {device}"


def _measure(name: str, preset: str | None, batch: int, device: str, repeat: int, memory: bool,
             min_seconds: float = 0.0) -> list[dict]:
    import torch

    from geobench.models import build_model

    gpu = device == "cuda"
    torch.manual_seed(0)
    model = build_model(name, preset=preset).to(device)
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    case = _case(name, preset, model, batch, "cuda amp channels-last" if gpu else "cpu")
    if not selected(case):
        return []
    q, r = _inputs(model, batch, device, gpu)
    images = 2 * batch
    extra = {"device": device, "threads": bench_threads(), "params_m": model.card.params_m}
    # Bounds apply at paper size; at tiny size a micro backbone makes any head look costly.
    targets = (FWD_TARGET, TRAIN_TARGET, MEM_TARGET) if preset is None else (">=", ">=", "<=")
    rows = []
    for train, metric, target in ((False, "forward", targets[0]), (True, "forward+backward", targets[1])):
        model.train(train)
        t = interleaved({
            "floor": _step_fn(model, _bare, q, r, train, gpu),
            "model": _step_fn(model, _full, q, r, train, gpu),
        }, repeat=repeat, warmup=1, min_seconds=min_seconds)
        rows.append(make_row(STAGE, case, f"{metric} throughput", images / t["model"],
                             images / t["floor"], "img/s", target,
                             samples=t.ratios("floor", "model"), **extra))
    if gpu:
        peaks = {}
        for label, run in (("floor", _bare), ("model", _full)):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            _step_fn(model, run, q, r, True, True)()
            peaks[label] = torch.cuda.max_memory_allocated() / MB
        rows.append(make_row(STAGE, case, "peak memory (train step)", peaks["model"], peaks["floor"],
                             "MB", targets[2], **extra))
    elif memory:
        del model
        full, exact = peak_rss_subprocess(train_step_peak, name, preset, batch, False).result
        bare, _ = peak_rss_subprocess(train_step_peak, name, preset, batch, True).result
        rows.append(make_row(STAGE, case, "peak memory (train step)", full / MB, bare / MB,
                             "MB", targets[2], exact=exact, **extra))
    return rows


def run(quick: bool) -> list[dict]:
    import torch

    from geobench.models import list_models
    from geobench.progress import track

    torch.set_num_threads(bench_threads())
    names = list_models()
    plan: list[tuple[str, str | None, int, str]] = [(n, "tiny", 8, "cpu") for n in names]
    # --quick keeps one paper-size model (the seed paper's), timed once after a warm-up,
    # so `geobench bench all --quick` stays within a few minutes on 2 cores.
    paper = ["mcgra"] if quick else names
    plan += [(n, None, 1 if quick else 2, "cpu") for n in paper]
    if torch.cuda.is_available():
        plan += [(n, None, 16, "cuda") for n in names]
    rows: list[dict] = []
    for name, preset, batch, device in track(plan, "benchmarking models"):
        # enough (floor, model) pairs per row for the regression gate's statistics; tiny
        # models loop each sample to ~50 ms so a millisecond call is not all jitter
        repeat = 3 if quick and preset is None else 5
        memory = not quick or preset == "tiny"
        rows += _measure(name, preset, batch, device, repeat, memory,
                         min_seconds=0.05 if preset == "tiny" else 0.0)
    return rows
