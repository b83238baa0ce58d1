"""Evaluate a model or a training run on a prepared split through the evaluation engine.

`evaluate_run(run, data, split)` is `geobench eval RUN --data DS --split S`: it builds
the model recorded in the run's checkpoint, embeds the split's queries and references
(batched, no grad), caches the descriptors in RUN/eval/<dataset>-<split>/features.h5
(the features-file contract; reused while the checkpoint and dataset hashes match) and
hands the file to `geobench.eval.evaluate.evaluate_features`. Training calls
`evaluate_model` for its periodic evaluation (in memory, nothing written).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import DataError, UsageError
from geobench.prepared import Prepared
from geobench.train.data import BAD_IMAGES_FILE, BadImages, read_bad_images
from geobench.train.evalplan import default_protocol, eval_plan, pick_eval_split, without_images
from geobench.train.rundir import (  # noqa: F401  (re-exported: the run folder helpers)
    check_eval_out,
    check_run_dir,
    checkpoint_label,
    default_eval_dir,
    resolve_checkpoint,
)

FEATURES_FILE = "features.h5"


@dataclass
class EmbeddedSets:
    query: Any       # (Nq, D) float32
    reference: Any   # (Nr, D) float32
    sets: Any        # geobench.eval.protocols.EvalSets
    protocol: str


def embed_sets(model: Any, prepared: Prepared, split: str, protocol: str | None = None, *,
               batch_size: int = 32, device: Any = "cpu", workers: int = 0, ctx: Any = None,
               amp: bool = False, bad: Any = None) -> EmbeddedSets:
    from geobench.eval.protocols import get_protocol
    from geobench.train.embed import embed_paths

    proto = get_protocol(protocol or default_protocol(prepared))
    sets, q_src, r_src, q_paths, r_paths = eval_plan(model, prepared, split, proto.name)
    kw = dict(batch_size=batch_size, device=device, workers=workers, ctx=ctx, amp=amp, bad=bad)
    query = embed_paths(model, q_paths, q_src, description=f"embed {split} queries", **kw)
    reference = embed_paths(model, r_paths, r_src, description=f"embed {split} references", **kw)
    if bad is not None and bad.skip and (np.isnan(query).any() or np.isnan(reference).any()):
        unreadable = {p for p, row in zip(q_paths + r_paths, np.concatenate(
            [np.isnan(query).any(axis=1), np.isnan(reference).any(axis=1)])) if row}
        sets, q_keep, r_keep = without_images(model, prepared, split, proto.name, unreadable)
        query, reference = query[q_keep], reference[r_keep]
    return EmbeddedSets(query, reference, sets, proto.name)


def pair_scorer(model: Any, prepared: Prepared, split: str, protocol: str | None,
                options: Any, **kw: Any) -> tuple[Any, Any]:
    """(options with rerank resolved, the model's pair scorer or None).

    options.rerank None takes the model card's default (ASA-VG: on); a model without a
    pair score is then simply not re-ranked, while an explicit --rerank K refuses it.
    """
    from dataclasses import replace

    from geobench.train.pairscore import ImagePairScorer, ImageSet, supports_pairs

    default = getattr(model.card, "rerank", 0) if supports_pairs(model) else 0
    k = default if options.rerank is None else options.rerank
    if not k:  # off: evaluate records it where the card would have re-ranked
        return replace(options, rerank=0, rerank_default=default), None
    _, q_src, r_src, q_paths, r_paths = eval_plan(model, prepared, split, protocol)
    scorer = ImagePairScorer(model, ImageSet(q_paths, q_src), ImageSet(r_paths, r_src),
                             memory_bytes=options.memory_bytes, **kw)
    return replace(options, rerank=k), scorer


def evaluate_model(model: Any, prepared: Prepared, split: str, protocol: str | None = None, *,
                   batch_size: int = 32, device: Any = "cpu", workers: int = 0, ctx: Any = None,
                   amp: bool = False, details: dict[str, Any] | None = None,
                   bad: Any = None) -> dict[str, Any]:
    """The protocol's metrics for `model` on a split (rank 0; other ranks get {}).
    `details`, when given, receives the EvalResult and the EvalSets (for figures)."""
    from geobench.eval.evaluate import EvalOptions, evaluate

    emb = embed_sets(model, prepared, split, protocol, batch_size=batch_size, device=device,
                     workers=workers, ctx=ctx, amp=amp, bad=bad)
    if ctx is not None and not ctx.is_main:
        return {}
    s = emb.sets
    # The card's re-ranking too (rank 0 only: the other ranks wait at their next collective).
    options, scorer = pair_scorer(model, prepared, split, emb.protocol, EvalOptions(),
                                  batch_size=batch_size, device=device, workers=workers, amp=amp)
    result = evaluate(emb.query, emb.reference, s.positives, emb.protocol, options,
                      semi_positives=s.semi_positives, query_latlon=s.query_latlon,
                      reference_latlon=s.reference_latlon, reranker=scorer)
    if details is not None:
        details.update(result=result, sets=s)
    return {"protocol": emb.protocol, **result.metrics}


def _cached(features: Path, attrs: dict[str, Any]) -> bool:
    """True when `features` was written for exactly this checkpoint, dataset, split, protocol."""
    if not features.is_file():
        return False
    import h5py

    try:
        with h5py.File(features, "r") as h5:
            found = {k: h5.attrs.get(k) for k in attrs}
    except OSError:
        return False
    norm = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
    return all(norm(found[k]) == str(v) for k, v in attrs.items())


def load_run_model(checkpoint_path: str | Path, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the model recorded in a checkpoint and load its weights."""
    from geobench.train.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint_path)
    return model_from_state(state, device), state


def model_from_state(state: dict[str, Any], device: Any = "cpu") -> Any:
    from geobench.train import cards

    args = dict(state.get("model_args", {}))
    preset = args.pop("preset", None)
    model = cards.build(state["model"], preset, args)
    model.load_state_dict(state["model_state"])
    model.to(device).eval()
    return model


def resolve_device(device: str | None) -> str:
    """None: cuda when available, else cpu; an unavailable cuda is a one-line error."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device {device!r}: use cpu or cuda (cuda:N for one GPU)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA device is available; use --device cpu")
    return device


def evaluate_run(run: str | Path, data: str | Path, split: str = "test", options: Any = None, *,
                 checkpoint: str | None = None, out: str | Path | None = None,
                 batch_size: int = 32, device: str | None = None, workers: int = 0,
                 amp: bool | None = None, features_dtype: str = "float32",
                 on_bad_image: str = "fail") -> Any:
    """`geobench eval RUN --data DS --split S` -> geobench.eval.evaluate.EvalSummary.

    checkpoint: "best" (RUN/best.pt), "last" (RUN/checkpoint.pt) or a path; default best
    when the run has one. device: default cuda when available; amp: default on with CUDA.
    Everything cheap is checked first (run, options, dataset, split, protocol, checkpoint),
    so a mistake fails before any image is embedded. Under torchrun the embedding is
    sharded over the ranks (see train.embedfile); rank 0 searches and writes the results,
    the other ranks return None.
    on_bad_image: "fail" (one error naming the file) or "skip" (leave unreadable images
    out; the count goes into the summary's notes and the list into OUT/bad_images.txt).
    """
    from dataclasses import replace

    from geobench.eval.evaluate import EvalOptions, Provenance, evaluate_features
    from geobench.eval.protocols import get_protocol
    from geobench.prepared import read_prepared
    from geobench.train.checkpoint import read_checkpoint

    run = check_run_dir(run, checkpoint)
    if batch_size < 1 or workers < 0:
        raise UsageError(f"--batch-size must be >= 1 and --workers >= 0 (got {batch_size}, "
                         f"{workers})")
    device = resolve_device(device)
    amp = device.startswith("cuda") if amp is None else bool(amp and device.startswith("cuda"))
    prepared = read_prepared(data)
    options = options or EvalOptions()
    protocol = get_protocol(options.protocol or default_protocol(prepared)).name
    pick_eval_split(prepared, split)  # the split must have queries and references
    path = resolve_checkpoint(run, checkpoint)
    state, digest = read_checkpoint(path)  # the hash of exactly the bytes loaded
    model = model_from_state(state, device)
    _preflight(options, model, prepared, split, protocol)
    options, scorer = pair_scorer(model, prepared, split, protocol, options, amp=amp,
                                  batch_size=batch_size, device=device, workers=workers)
    name = prepared.name or Path(data).resolve().name
    out_dir = Path(out) if out is not None else default_eval_dir(run, data, split, checkpoint)
    features = out_dir / FEATURES_FILE
    attrs = {"model": state["model"], "checkpoint_sha256": digest,
             "dataset": name, "dataset_sha256": prepared.dataset_hash(), "split": split,
             "protocol": protocol, "run": run.resolve().name, "on_bad_image": on_bad_image}
    bad = BadImages(on_bad_image, out_dir / BAD_IMAGES_FILE)
    if not _cached(features, attrs):
        from geobench.train import distributed as dist
        from geobench.train.embedfile import embed_to_features

        if int(os.environ.get("RANK", "0") or 0) == 0:
            bad.reset()  # a fresh embedding writes a fresh list

        ctx = dist.setup(device)
        try:
            model.to(ctx.device)
            written = embed_to_features(model, prepared, split, protocol, features, attrs,
                                        batch_size=batch_size, device=ctx.device,
                                        workers=workers, amp=amp, ctx=ctx,
                                        dtype=_dtype(features_dtype), bad=bad)
        finally:
            dist.teardown(ctx)
        if written is None:
            return None  # a non-zero rank: rank 0 evaluates
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return None  # cached features under torchrun: rank 0 evaluates
    prov = Provenance(run=attrs["run"], dataset=name, split=split, model=state["model"],
                      checkpoint_sha256=digest, dataset_sha256=attrs["dataset_sha256"],
                      checkpoint=checkpoint_label(run, checkpoint),
                      extra={"checkpoint": str(path.resolve()), "step": int(state["step"]),
                             "data": str(Path(data).resolve()), "device": device,
                             "amp": amp, "selected_on": (state.get("best") or {}).get("split", "")},
                      **_row_record(run, state))
    summary = evaluate_features(features, out_dir, replace(options, protocol=protocol), prov,
                                scorer)
    skipped = read_bad_images(bad.log)
    if skipped:
        summary.notes.append(f"skipped {len(skipped)} unreadable image(s) (--on-bad-image skip); "
                             f"they are listed in {bad.log}")
    return summary


def _preflight(options: Any, model: Any, prepared: Prepared, split: str, protocol: str) -> None:
    """The --search checks that need the descriptor size and gallery, before embedding."""
    from geobench.eval.approx import preflight

    if options.search in (None, "", "exact"):
        return
    n_reference = len(eval_plan(model, prepared, split, protocol)[0].references)
    preflight(options.search, options.nprobe, options.ef_search, model.card.descriptor_dim,
              n_reference)


def _dtype(name: str) -> Any:
    import numpy as np

    if name not in ("float32", "float16"):
        raise UsageError(f"--features-dtype {name!r}: use float32 or float16 (half the file; "
                         f"scores are still accumulated in float32/float64)")
    return np.dtype(name)


def _row_record(run: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Provenance fields naming the ablation row: preset, variant, full model_args, weights.

    Rebuilt from the checkpoint (older runs' config.json lacks them); the starting-weights
    record is whatever the run's config.json holds under `init_weights`.
    """
    from geobench.models.variant import model_record
    from geobench.train.config import read_config

    args = dict(state.get("model_args", {}))
    preset = args.pop("preset", None)
    record = model_record(state["model"], preset, args)
    try:
        weights = read_config(run).get("init_weights") or {}
    except DataError:
        weights = {}
    return {"preset": preset or "", "variant": record["variant"],
            "model_args": record["model_args_full"],
            "weights": weights if isinstance(weights, dict) else {"name": str(weights)}}


def evaluate_weights(model_name: str, data: str | Path, out: str | Path, split: str = "test",
                     options: Any = None, *, weights: str | Path | None = None,
                     pretrained: str | None = None, preset: str | None = None,
                     batch_size: int = 32, device: str = "cpu", workers: int = 0,
                     allow_unpinned: bool = False) -> Any:
    """`geobench eval --model NAME --weights FILE|--pretrained X --data DS --out DIR`.

    Evaluates a registered model as loaded from a weight file (e.g. a released checkpoint)
    or the catalog, without training; the weights' provenance goes into the results.
    """
    from dataclasses import replace

    from geobench.eval.evaluate import EvalOptions, Provenance, evaluate_features
    from geobench.eval.features import write_features
    from geobench.models.initial import apply_start, plan_start
    from geobench.prepared import read_prepared
    from geobench.train import cards

    if weights is None and pretrained is None:
        raise UsageError(f"--model {model_name}: pass --weights FILE or --pretrained NAME|imagenet "
                         f"(what to evaluate it with)")
    start = plan_start(model_name, preset, {}, str(weights) if weights else None, pretrained,
                       allow_unpinned=allow_unpinned)
    model_args = start.model_args  # a catalog file for one variant (e.g. CosPlace 512-D)
    model = cards.build(model_name, preset, model_args)
    init = apply_start(model, start)
    model.to(device).eval()
    prepared = read_prepared(data)
    options = options or EvalOptions()
    protocol = options.protocol or default_protocol(prepared)
    _preflight(options, model, prepared, split, protocol)
    name = prepared.name or Path(data).resolve().name
    emb = embed_sets(model, prepared, split, protocol, batch_size=batch_size, device=device,
                     workers=workers)
    s = emb.sets
    features = Path(out) / FEATURES_FILE
    attrs = {"model": model_name, "weights_sha256": init.get("sha256", ""), "dataset": name,
             "dataset_sha256": prepared.dataset_hash(), "split": split, "protocol": protocol}
    write_features(features, emb.query, emb.reference, s.positives,
                   semi_positives=s.semi_positives, query_latlon=s.query_latlon,
                   reference_latlon=s.reference_latlon, query_uids=list(s.queries["uid"]),
                   reference_uids=list(s.references["uid"]), attrs=attrs)
    from geobench.models.variant import model_record

    record = model_record(model_name, preset, model_args)
    prov = Provenance(run=f"{model_name}+{init['name']}", dataset=name, split=split,
                      model=model_name, checkpoint_sha256=init.get("sha256", ""),
                      dataset_sha256=attrs["dataset_sha256"],
                      extra={"data": str(Path(data).resolve())}, preset=preset or "",
                      variant=record["variant"], model_args=record["model_args_full"],
                      weights=init)
    options, scorer = pair_scorer(model, prepared, split, protocol, options,
                                  batch_size=batch_size, device=device, workers=workers)
    return evaluate_features(features, out, replace(options, protocol=protocol), prov, scorer)
