"""Pair-scoring models: losses on a similarity matrix, ASA-VG's aligned matrix, the engine path."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from geobench.errors import UsageError
from geobench.losses import build_loss, takes_similarity
from geobench.models import build_model
from geobench.models.asa import correlate_all, crop_circular

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unit(b: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)


@pytest.mark.parametrize("name", ["soft_margin_triplet", "soft_margin_triplet_hard",
                                  "semi_soft_tri_hard", "infonce"])
def test_loss_from_similarity_equals_descriptor_path(name):
    q, r = _unit(5, 4, 0), _unit(5, 4, 1)
    loss = build_loss(name)
    assert takes_similarity(loss)
    torch.testing.assert_close(loss.from_similarity(q @ r.T), loss(q, r), rtol=0, atol=1e-12)
    # The matrix is not symmetric: swapping the roles of queries and references changes it.
    assert not torch.allclose(q @ r.T, (q @ r.T).T)


def test_multi_similarity_cannot_take_a_matrix():
    assert not takes_similarity(build_loss("multi_similarity"))


def brute_triplet(sim: torch.Tensor, gamma: float, euclidean: bool) -> float:
    b = sim.shape[0]

    def d(i: int, j: int) -> float:  # query i, reference j
        sq = 2.0 - 2.0 * float(sim[i, j])
        return math.sqrt(sq) if euclidean else sq

    total = 0.0
    for a in range(b):
        for n in range(b):
            if n != a:
                total += math.log1p(math.exp(gamma * (d(a, a) - d(a, n))))  # query anchor
                total += math.log1p(math.exp(gamma * (d(a, a) - d(n, a))))  # reference anchor
    return total / (2 * b * (b - 1))


@pytest.mark.parametrize("distance", ["squared", "euclidean"])
def test_triplet_distance_option_matches_loop(distance):
    q, r = _unit(6, 5, 2), _unit(6, 5, 3)
    loss = build_loss("soft_margin_triplet", gamma=10.0, distance=distance)
    want = brute_triplet(q @ r.T, 10.0, distance == "euclidean")
    assert loss(q, r).item() == pytest.approx(want, rel=1e-9)


def test_euclidean_distance_has_finite_gradients_for_identical_pairs():
    q = _unit(4, 3, 4).requires_grad_(True)
    loss = build_loss("soft_margin_triplet", distance="euclidean")(q, q.detach().clone())
    loss.backward()
    assert torch.isfinite(q.grad).all()


def test_bad_distance_is_refused():
    with pytest.raises(UsageError, match="squared | euclidean"):
        build_loss("soft_margin_triplet", distance="cosine")
    with pytest.raises(UsageError, match=r"\(B, B\)"):
        build_loss("soft_margin_triplet").from_similarity(torch.zeros(3, 4))


def _asavg_batch(b: int = 3):
    torch.manual_seed(0)
    model = build_model("asavg", preset="tiny").eval()
    (hq, wq), (hp, wp) = model.card.input_size["perspective"], model.card.input_size["ground"]
    return model, torch.randn(b, 3, hq, wq), torch.randn(b, 3, hp, wp)


def test_asavg_matrix_aligns_every_panorama_to_every_query():
    model, q, p = _asavg_batch()
    with torch.no_grad():
        sim = model(q, p, matrix=True)
        dq, dp = model(q, p)
        fq, fp = model.features(q, "perspective"), model.features(p, "ground")
        for i in range(3):
            for j in range(3):
                off = correlate_all(fq[i:i + 1], fp[j:j + 1])[0, 0].argmax()
                crop = crop_circular(fp[j:j + 1], off.view(1), fq.shape[-1])
                want = (F.normalize(model.aggregator(crop), dim=-1) @ dq[i]).item()
                assert sim[i, j].item() == pytest.approx(want, abs=1e-5)
        # forward() aligns each panorama to its own query only: that is the diagonal.
        torch.testing.assert_close(sim.diagonal(), (dq * dp).sum(-1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.score_pairs(fq, fp), sim.diagonal(), atol=1e-5, rtol=1e-5)
        # The off-diagonal is not the descriptor product of forward()'s outputs.
        assert (sim - dq @ dp.T).abs().max() > 1e-3


def test_base_model_matrix_is_the_descriptor_product():
    model = build_model("mixvpr", preset="tiny").eval()
    x = torch.randn(2, 3, *model.card.input_size["street"])
    with torch.no_grad():
        q, r = model(x, x.flip(0))
        torch.testing.assert_close(model(x, x.flip(0), matrix=True), q @ r.T)


def test_engine_hands_the_models_matrix_to_the_loss(tmp_path, monkeypatch):
    from geobench.losses import SoftMarginTriplet
    from geobench.models.asavg import ASAVGModel
    from geobench.progress import set_quiet
    from geobench.train.config import resolve_config
    from geobench.train.engine import train
    from tests._train_world import write_world

    set_quiet(True)
    made, seen, descriptor_calls = [], [], []
    original_matrix = ASAVGModel.similarity_matrix
    original_loss = SoftMarginTriplet.from_similarity

    def matrix(self, q, r):
        made.append(original_matrix(self, q, r))
        return made[-1]

    def from_similarity(self, sim):
        seen.append((sim, self.distance))
        return original_loss(self, sim)

    monkeypatch.setattr(ASAVGModel, "similarity_matrix", matrix)
    monkeypatch.setattr(SoftMarginTriplet, "from_similarity", from_similarity)
    monkeypatch.setattr(SoftMarginTriplet, "forward", lambda *a: descriptor_calls.append(a))
    ds = write_world(tmp_path / "w", n_train=4, n_test=2, query_view="perspective",
                     reference_view="ground", pano_size=(32, 128), aerial_size=32)
    cfg = resolve_config("asavg", ds, tmp_path / "run", preset="tiny",
                         cli={"workers": 0, "eval_every": 0, "max_steps": 2, "batch_size": 3})
    assert cfg.pairwise_training and "pairwise_training" not in cfg.sources.get("ignored", "")
    train(cfg)
    assert len(made) == len(seen) == 2 and not descriptor_calls
    for m, (s, distance) in zip(made, seen):
        assert m.shape == (3, 3) and torch.equal(m.float(), s) and distance == "euclidean"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["pairwise_training"] is True and saved["loss_args"]["distance"] == "euclidean"


def test_pairwise_training_refuses_a_loss_that_needs_descriptors(tmp_path):
    from geobench.progress import set_quiet
    from geobench.train.config import resolve_config
    from geobench.train.engine import train
    from tests._train_world import write_world

    set_quiet(True)
    ds = write_world(tmp_path / "w", n_train=4, n_test=2, query_view="perspective",
                     reference_view="ground", pano_size=(32, 128), aerial_size=32)
    cfg = resolve_config("asavg", ds, tmp_path / "run", preset="tiny",
                         cli={"workers": 0, "eval_every": 0, "max_steps": 1, "batch_size": 2})
    cfg = dataclasses.replace(cfg, loss="multi_similarity", loss_args={})
    with pytest.raises(UsageError, match="pairwise_training: false"):
        train(cfg)
