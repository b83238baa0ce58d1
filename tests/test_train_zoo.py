"""One CPU training step for every registered model (tiny preset), generated from the registry."""
from __future__ import annotations

import pytest
import torch

from geobench.progress import set_quiet
from geobench.train.checkpoint import load_checkpoint
from geobench.train.config import resolve_config
from geobench.train.engine import train
from tests._train_world import TEST_MODEL, write_world

try:
    from geobench.models import list_models

    ZOO = [m for m in list_models() if m != TEST_MODEL]
except ImportError:  # the model zoo has not landed in this tree
    ZOO = []


@pytest.mark.skipif(not ZOO, reason="model zoo (geobench.models.zoo) not available")
@pytest.mark.parametrize("name", ZOO or ["-"])
def test_one_training_step(name, tmp_path):
    from geobench.models import MODELS
    from geobench.train.cards import resolve_card

    set_quiet(True)
    preset = "tiny" if "tiny" in MODELS.card(name).presets else None
    card = resolve_card(name, preset)
    q_view, r_view = card.query_view, card.reference_view
    # Polar models read aerial rows and transform them on the fly (the data path under test).
    index_r = "aerial" if r_view == "polar" else r_view
    qh, qw = card.input_size[q_view]
    rh, rw = card.input_size[r_view]
    ds = write_world(tmp_path / "w", n_train=4, n_test=2, query_view=q_view, reference_view=index_r,
                     pano_size=(qh, qw) if q_view in ("ground", "polar") else (rh, rw),
                     aerial_size=max(rh, rw, qh))
    cfg = resolve_config(name, ds, tmp_path / "run", preset=preset,
                         cli={"workers": 0, "eval_every": 0, "max_steps": 1, "batch_size": 2,
                              "amp": False, "images_per_place": 1})  # the world: one pair per place
    summary = train(cfg)
    assert summary.steps == 1 and summary.final_loss == summary.final_loss  # finite
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["model"] == name and state["step"] == 1
    assert all(torch.isfinite(v).all() for v in state["model_state"].values() if v.is_floating_point())
