"""Two gloo processes on CPU reproduce a single-process run with the same global batch."""
from __future__ import annotations

import os
import socket

import pytest
import torch

from geobench.progress import set_quiet
from geobench.train.checkpoint import load_checkpoint
from geobench.train.config import resolve_config
from geobench.train.engine import train
from tests._train_world import register_test_model, write_world

OPTS = {"workers": 0, "eval_every": 0, "epochs": 2, "batch_size": 4, "seed": 5,
        "model_args": {"dropout": 0.0}, "loss": "infonce"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, ds: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    set_quiet(True)
    name = register_test_model()
    train(resolve_config(name, ds, out, cli=OPTS))


def test_two_gloo_processes_match_single_process(tmp_path):
    set_quiet(True)
    name = register_test_model()
    ds = write_world(tmp_path / "w")
    single = train(resolve_config(name, ds, tmp_path / "single", cli=OPTS))
    torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), str(ds), str(tmp_path / "ddp")),
                                nprocs=2, join=True)
    a = load_checkpoint(tmp_path / "single" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert a["step"] == b["step"] == single.steps == 6
    for key, value in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][key], value, rtol=1e-4, atol=1e-5)
    # The learnable InfoNCE temperature follows the same path too.
    torch.testing.assert_close(b["loss_state"]["logit_scale"], a["loss_state"]["logit_scale"])
    for ra, rb in zip(a["log"], b["log"]):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
    assert not (tmp_path / "ddp" / "best.pt").exists()
