"""geobench's augmentations against the official functions (benchmarks/make_augment_golden.py:
albumentations 1.3 for Sample4Geo / LRFR, torchvision's RandAugment on PIL for MixVPR)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geobench.train import photometric as P
from geobench.train.randaugment import OPS, SIGNED, apply_op, magnitude

GOLDEN = np.load(Path(__file__).parent / "fixtures" / "augment_golden.npz")
IMG = GOLDEN["image"]


def close(a: np.ndarray, b: np.ndarray, levels: int = 0, share: float = 0.0) -> None:
    """Equal up to `levels` grey levels, except at most `share` of the values."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert a.shape == b.shape
    assert (diff > levels).mean() <= share, (diff.max(), (diff > levels).mean())


def test_golden_format():
    assert str(GOLDEN["format"]) == "geobench-augment-golden/1"


@pytest.mark.parametrize("quality", [90, 95, 100])
def test_jpeg(quality):
    close(P.jpeg(IMG, quality), GOLDEN[f"jpeg_{quality}"])


@pytest.mark.parametrize("name,value", [("brightness", 0.85), ("brightness", 1.13), ("contrast", 0.86),
                                        ("contrast", 1.15), ("saturation", 0.87), ("saturation", 1.12),
                                        ("hue", -0.15), ("hue", 0.07)])
def test_color_functions(name, value):
    close(getattr(P, name)(IMG, value), GOLDEN[f"{name}_{value}"])


def test_color_jitter_in_the_drawn_order():
    got = P.color_jitter(IMG, tuple(GOLDEN["jitter_factors"]), tuple(GOLDEN["jitter_order"]))
    close(got, GOLDEN["jitter"])


def test_sharpen_and_advanced_blur():
    kernel = P.sharpen_kernel(0.35, 0.7)
    np.testing.assert_allclose(kernel, GOLDEN["sharpen_matrix"], rtol=0, atol=1e-7)
    close(P.convolve(IMG, kernel), GOLDEN["sharpen"])
    k, sx, sy, angle, beta = GOLDEN["blur_params"]
    kernel = P.blur_kernel(int(k), sx, sy, angle, beta, GOLDEN["blur_noise"])
    np.testing.assert_allclose(kernel, GOLDEN["blur_kernel"], rtol=1e-6, atol=1e-8)
    close(P.convolve(IMG, kernel), GOLDEN["blur"])


@pytest.mark.parametrize("ratio", [0.4, 0.5])
def test_grid_dropout(ratio):
    holes = P.grid_holes(*IMG.shape[:2], ratio)
    assert np.array_equal(np.array(holes), GOLDEN[f"grid_{ratio}"])
    close(P.cut_holes(IMG, holes), GOLDEN[f"grid_{ratio}_image"])


CASES = [(op, s) for op in OPS for s in ((1, -1) if op in SIGNED else (1,))]


@pytest.mark.parametrize("op,sign", CASES)
def test_randaugment_operations(op, sign):
    h, w = IMG.shape[:2]
    mag = sign * magnitude(op, 9, 31, h, w)
    assert mag == pytest.approx(float(GOLDEN[f"ra_{op}_{sign}_mag"]), rel=1e-6, abs=1e-6)
    got, want = apply_op(IMG, op, mag), GOLDEN[f"ra_{op}_{sign}"]
    if op in ("ShearX", "ShearY", "Rotate"):
        # Within a grey level wherever the source is inside the image; the one-pixel rim
        # next to the black fill differs (PIL does not blend a border pixel with the fill).
        import cv2

        inside = apply_op(np.full_like(IMG, 255), op, mag)[..., 0] == 255
        inner = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        close(got[inner], want[inner], levels=1)
        assert inner.mean() > 0.85
    else:
        close(got, want, levels=1)
