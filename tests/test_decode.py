"""Reduced-size JPEG decoding for the data loaders: header parsing, factor choice, pixels."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from geobench.train.data import ViewSource, decode_need, jpeg_size, read_image, reduced_flag


@pytest.fixture
def jpeg(tmp_path):
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8), (0, 0), 3)
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def test_jpeg_size_reads_the_frame_header(jpeg, tmp_path):
    assert jpeg_size(np.fromfile(jpeg, np.uint8)) == (600, 800)
    progressive = tmp_path / "p.jpg"
    cv2.imwrite(str(progressive), cv2.imread(str(jpeg)), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert jpeg_size(np.fromfile(progressive, np.uint8)) == (600, 800)
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), cv2.imread(str(jpeg)))
    assert jpeg_size(np.fromfile(png, np.uint8)) is None
    assert jpeg_size(b"\xff\xd8\xff") is None  # truncated


@pytest.mark.parametrize("need, factor", [((600, 800), 1), ((300, 400), 2), ((299, 100), 2),
                                          ((150, 200), 4), ((75, 100), 8), ((10, 10), 8),
                                          ((151, 10), 2)])
def test_reduction_keeps_every_side_at_least_the_need(need, factor):
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}
    assert reduced_flag((600, 800), need) == flags[factor]
    assert reduced_flag(None, need) == cv2.IMREAD_COLOR


def test_polar_views_need_an_aerial_that_covers_rows_and_rim():
    polar = ViewSource("polar", "aerial")
    assert decode_need(polar, (112, 616)) == (224, 224)
    assert decode_need(polar, (32, 400)) == (128, 128)  # the rim: ceil(400 / pi)
    assert decode_need(ViewSource("ground", "ground"), (112, 616)) == (112, 616)


def test_reduced_decode_matches_full_decode_then_resize(jpeg):
    full = read_image(str(jpeg))
    small = read_image(str(jpeg), need=(150, 200))
    assert small.shape == (150, 200, 3)
    area = cv2.resize(full, (200, 150), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - area.astype(int)).mean() < 2.0
    assert read_image(str(jpeg), need=(600, 800)).shape == full.shape
