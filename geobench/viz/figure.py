"""Shared pieces of geobench's figures: tiles, frames, styles and saving in any format.

Figures are built with matplotlib's object API (no pyplot state) on the Agg canvas, so
they render the same headless, in tests and in CI.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from geobench.errors import UsageError
from geobench.fileio import atomic_path

FORMATS = ("png", "pdf", "svg")
# Frame colours chosen to stay distinguishable for the common colour-vision deficiencies.
FRAME = {"positive": (26, 150, 65), "semi_positive": (240, 190, 0), "negative": (215, 25, 28)}
GREY = (150, 150, 150)
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
         "font.family": "DejaVu Sans"}


def output_format(out: Path, fmt: str | None) -> str:
    """The figure format: --format if given, else the file's extension (png by default)."""
    chosen = (fmt or out.suffix.lstrip(".") or "png").lower()
    if chosen not in FORMATS:
        raise UsageError(f"{out}: unsupported figure format {chosen!r}; use one of "
                         f"{', '.join(FORMATS)} (--format or the file extension)")
    if out.exists() and out.is_dir():
        raise UsageError(f"{out}: is a directory; pass a file name such as {out / ('grid.' + chosen)}")
    return chosen


def new_figure(width_in: float, height_in: float, dpi: int = 100) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, out: Path, fmt: str) -> Path:
    """Write atomically; the canvas size is kept (no tight bbox) so pixel layouts hold."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi)
    return out


def fit(img: np.ndarray, height: int) -> np.ndarray:
    """Resize an RGB image to `height` rows keeping its aspect ratio."""
    import cv2

    h, w = img.shape[:2]
    width = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def framed(img: np.ndarray, colour: tuple[int, int, int], width: int) -> np.ndarray:
    """The image with a solid frame of `width` pixels drawn over its border."""
    out = img.copy()
    out[:width], out[-width:] = colour, colour
    out[:, :width], out[:, -width:] = colour, colour
    return out


def placeholder(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), GREY, dtype=np.uint8)


def overlay(img: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (any size) over an RGB image with the inferno colour map."""
    import cv2
    from matplotlib import colormaps

    heat = cv2.resize(heat.astype(np.float32), (img.shape[1], img.shape[0]),
                      interpolation=cv2.INTER_LINEAR)
    lo, hi = float(heat.min()), float(heat.max())
    heat = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colour = colormaps["inferno"](heat)[..., :3] * 255.0
    return np.clip((1 - alpha) * img + alpha * colour, 0, 255).astype(np.uint8)
