"""The `augment` training option: which photometric augmentations a run applies.

Every key defaults to off; a model card sets its paper's pipeline (Sample4Geo / LRFR:
jpeg, colour jitter, blur or sharpen, grid or coarse dropout; MixVPR: RandAugment) and
`--set augment.KEY=VALUE` changes one, e.g. `--set augment.dropout_p=0`, and
`--set augment=none` switches them all off. The geometric
ones (joint flip, quarter turns) are the options hflip_p and rotate_p (augment.py).
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from geobench.errors import UsageError

# key: (default, what it is)
AUGMENT: dict[str, tuple[Any, str]] = {
    "jpeg_p": (0.0, "probability of a JPEG re-compression (before resizing, as Sample4Geo)"),
    "jpeg_quality": ([90, 100], "its quality range, both ends included"),
    "color_jitter_p": (0.0, "probability of a colour jitter"),
    "color_jitter": (0.15, "its strength: brightness, contrast, saturation factors in 1 +- s, hue +- s"),
    "blur_sharpen_p": (0.0, "probability of one of AdvancedBlur / Sharpen (albumentations defaults)"),
    "dropout_p": (0.0, "probability of one of GridDropout / CoarseDropout (10-25 holes, 0.1-0.2 x height)"),
    "grid_ratio_query": (0.5, "GridDropout's hole ratio on query images"),
    "grid_ratio_reference": (0.4, "GridDropout's hole ratio on reference images"),
    "randaugment_ops": (0, "RandAugment operations per image (MixVPR: 3; 0: off)"),
    "randaugment_magnitude": (9, "RandAugment's magnitude, of 31 bins"),
}
_PROBS = ("jpeg_p", "color_jitter_p", "blur_sharpen_p", "dropout_p")
_RATIOS = ("grid_ratio_query", "grid_ratio_reference", "color_jitter")


def defaults() -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list) else v) for k, (v, _) in AUGMENT.items()}


def resolve_augment(given: Mapping[str, Any] | None, where: str = "augment") -> dict[str, Any]:
    """The full option set with `given` applied; one-line UsageError for a bad key or value."""
    out = defaults()
    for key, value in dict(given or {}).items():
        if key not in AUGMENT:
            close = difflib.get_close_matches(str(key), AUGMENT, n=2, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UsageError(f"{where}: unknown augmentation {key!r}{hint}; the keys are "
                             f"{', '.join(AUGMENT)}")
        out[key] = value

    def bad(key: str, why: str) -> UsageError:
        return UsageError(f"{where}: augment.{key} = {out[key]!r} {why}")

    try:
        for key in _PROBS + _RATIOS:
            out[key] = float(out[key])
        for key in ("randaugment_ops", "randaugment_magnitude"):
            if float(out[key]) != int(out[key]):
                raise ValueError
            out[key] = int(out[key])
        lo, hi = (int(v) for v in out["jpeg_quality"])
        out["jpeg_quality"] = [lo, hi]
    except (TypeError, ValueError):
        raise UsageError(f"{where}: augment values must be numbers (jpeg_quality a pair "
                         f"[low, high]); got {dict(given or {})}") from None
    for key in _PROBS:
        if not 0 <= out[key] <= 1:
            raise bad(key, "must be a probability in [0, 1] (0: off)")
    for key in _RATIOS:
        if not 0 <= out[key] < 1:
            raise bad(key, "must lie in [0, 1)")
    if not 1 <= lo <= hi <= 100:
        raise bad("jpeg_quality", "must be [low, high] with 1 <= low <= high <= 100")
    if not 0 <= out["randaugment_ops"] <= 10:
        raise bad("randaugment_ops", "must lie in 0..10 (0: off)")
    if not 0 <= out["randaugment_magnitude"] <= 30:
        raise bad("randaugment_magnitude", "must lie in 0..30 (31 bins, as torchvision)")
    return out


def switched_off() -> dict[str, Any]:
    """Every photometric augmentation off (`--set augment=none`)."""
    return {**{k: 0.0 for k in _PROBS}, "randaugment_ops": 0}


def active(spec: Mapping[str, Any]) -> bool:
    return any(spec[k] > 0 for k in _PROBS) or spec["randaugment_ops"] > 0
