"""A tiny model and a tiny prepared dataset for the training tests.

The model is a two-tower conv net following the GeoModel contract; it is registered
under a private name so the engine builds it through the model registry like any other.
Each location has its own colour code shared by its panorama and aerial image, so a
model can learn the matching in a few steps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

TEST_MODEL = "_tinyconv_test"


def register_test_model() -> str:
    from dataclasses import replace

    import torch
    from torch import nn

    from geobench.models.base import GeoModel
    from geobench.models.registry import MODELS, ModelCard, register_model

    if TEST_MODEL in MODELS:
        return TEST_MODEL

    class TinyConv(GeoModel):
        def __init__(self, card: ModelCard, width: int = 8, dim: int = 16, dropout: float = 0.1,
                     nan_at: int | None = None) -> None:
            super().__init__(card)

            def tower() -> nn.Module:
                return nn.Sequential(
                    nn.Conv2d(3, width, 3, stride=2, padding=1), nn.GroupNorm(2, width), nn.ReLU(),
                    nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                    nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Dropout(dropout),
                    nn.Linear(4 * width, dim))

            self.query_net, self.reference_net = tower(), tower()
            self.nan_at, self.calls = nan_at, 0

        def encode(self, images: torch.Tensor, branch: str) -> torch.Tensor:
            out = (self.query_net if branch == "query" else self.reference_net)(images)
            if self.training and self.nan_at is not None and branch == "query":
                self.calls += 1
                if self.calls >= self.nan_at:
                    out = out * float("nan")
            return out

    card = ModelCard(
        paper="test", description="two-tower tiny conv net for training tests",
        input_size={"ground": (16, 64), "aerial": (24, 24), "polar": (16, 64)},
        descriptor_dim=16, query_view="ground", reference_view="aerial",
        recipe={"loss": "soft_margin_triplet", "optimizer": "adam", "lr": 3e-3, "batch_size": 4,
                "epochs": 2, "schedule": {"name": "cosine"}, "provenance": "test"},
        presets={"tiny": {"kwargs": {"width": 4}, "recipe": {"batch_size": 6}}})

    @register_model(card=card, name=TEST_MODEL)
    def _factory(input_size: dict | None = None, width: int = 8, dim: int = 16,
                 dropout: float = 0.1, nan_at: int | None = None) -> GeoModel:
        sized = replace(card, input_size={k: tuple(v) for k, v in (input_size or card.input_size).items()})
        return TinyConv(sized, width, dim, dropout, nan_at)

    return TEST_MODEL


def _colour(i: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + i)
    return rng.integers(30, 226, size=3)


def _pano(c: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.clip(c[None, None, :] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    img[: h // 3] = 200  # sky
    return img


def _aerial(c: np.ndarray, rng: np.random.Generator, s: int) -> np.ndarray:
    img = np.clip(c[None, None, :] + rng.normal(0, 12, (s, s, 3)), 0, 255).astype(np.uint8)
    img[3 * s // 8:5 * s // 8, 3 * s // 8:5 * s // 8] = 255 - c  # a roof in the middle
    return img


def write_world(root: Path, n_train: int = 12, n_test: int = 6, with_val: bool = False,
                query_view: str = "ground", reference_view: str = "aerial",
                pano_size: tuple[int, int] = (24, 96), aerial_size: int = 32) -> Path:
    """Write query/reference images of the given views plus a prepared DS; returns DS.

    Panorama-shaped images for ground/polar views, square ones for the others.
    """
    import cv2

    from geobench.prepared import write_prepared

    raw = root / "raw"
    index, positives = [], []
    splits = [("train", n_train), ("test", n_test)] + ([("val", n_test)] if with_val else [])
    loc = 0
    rng = np.random.default_rng(0)

    def image(view: str, c: np.ndarray) -> np.ndarray:
        if view in ("ground", "polar"):
            return _pano(c, rng, *pano_size)
        return _aerial(c, rng, aerial_size)

    for split, n in splits:
        for i in range(n):
            c = _colour(loc)
            g, a = f"{query_view}/{split}{i}.png", f"{reference_view}/{split}{i}.png"
            for rel, img in ((g, image(query_view, c)), (a, image(reference_view, c))):
                (raw / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(raw / rel), img[:, :, ::-1])
            east, north = 500000.0 + 30.0 * (loc % 5), 4400000.0 + 30.0 * (loc // 5)
            common = dict(split=split, item=str(loc), lat=40.0, lon=-75.0, utm_e=east,
                          utm_n=north, city="testville")
            index.append(dict(uid=f"q{loc}", role="query", view=query_view, path=g, heading=0.0, **common))
            index.append(dict(uid=f"r{loc}", role="reference", view=reference_view, path=a, **common))
            kind = "train_positive" if split == "train" else "positive"
            positives.append(dict(split=split, query=f"q{loc}", reference=f"r{loc}", kind=kind,
                                  distance_m=0.0))
            loc += 1
    return write_prepared(root / "ds", index, positives, dataset="tinyworld", raw_root=raw).root
