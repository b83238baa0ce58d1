"""Three SAFA training steps equal to the official TensorFlow code's three steps.

tests/fixtures/safa_train_golden.npz was written by benchmarks/make_safa_train_golden.py,
which runs the official spatial_net.SAFA, train_cvusa.compute_loss and
tf.train.AdamOptimizer(1e-5, 0.9, 0.999) on a seeded batch (see its doc). Here the same
weights go through geobench's train step with the safa card's recipe (loss, loss_args,
optimiser, lr, schedule): loss, every gradient norm and the updated weights must agree,
in float64 to rounding (three steps) and in float32, the official precision, within the
two frameworks' rounding (one step).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geobench.losses import build_loss
from geobench.models import build_model
from geobench.train.batching import loss_options
from geobench.train.config import resolve_config
from geobench.train.optim import build_optimizer, build_scheduler
from geobench.train.step import step_parts, train_step
from geobench.train.tfadam import TFAdam

GOLDEN = Path(__file__).parent / "fixtures" / "safa_train_golden.npz"
CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # VGG-16's convs in torchvision's numbering
CONV_NAMES = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
              "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
TOWER = {"grd": "query", "sat": "reference"}  # ground panorama = query, polar aerial = reference


def _to_geobench(tf_name: str) -> tuple[str, tuple[int, ...]]:
    """geobench's parameter name and the axis order taking the TF array to it."""
    scope, *rest = tf_name.split("/")
    if scope.startswith("VGG_"):
        layer, kind = rest
        prefix = f"towers.{TOWER[scope[4:]]}.backbone.features.{CONV_INDEX[CONV_NAMES.index(layer)]}"
        return (f"{prefix}.weight", (3, 2, 0, 1)) if kind == "weights" else (f"{prefix}.bias", (0,))
    tower = TOWER[scope.split("_")[1]]
    # weights1 (N, N/2, K) -> w1 (K, N, N/2); biases1 (1, N/2, K) -> b1 (K, N/2); the same for 2.
    target = {"weights1": "w1", "biases1": "b1", "weights2": "w2", "biases2": "b2"}[rest[0]]
    axes = (2, 0, 1) if target.startswith("w") else (0, 2, 1)
    return f"towers.{tower}.aggregator.{target}", axes


def _from_tf(value: np.ndarray, axes: tuple[int, ...]) -> torch.Tensor:
    out = torch.from_numpy(np.ascontiguousarray(value.transpose(axes)))
    return out[0] if out.ndim == 3 and value.shape[0] == 1 and axes == (0, 2, 1) else out


def _to_tf(value: torch.Tensor, axes: tuple[int, ...], tf_shape: tuple[int, ...]) -> np.ndarray:
    if axes == (0, 2, 1):  # (K, n) -> (1, n, K)
        return value.numpy().T[None].reshape(tf_shape)
    return value.numpy().transpose(np.argsort(axes)).reshape(tf_shape)


@pytest.fixture(scope="module")
def golden():
    return _load_golden()


def _load_golden():
    data = np.load(GOLDEN)
    assert str(data["format"]) == "geobench-safa-train-golden/2"
    names = [str(n) for n in data["names"]]
    shapes = [tuple(int(x) for x in str(s).split(",")) for s in data["shapes"]]
    seed = int(data["seed"])
    # The generator's rule: variable k is mean + std * PCG64([seed, k]) normals, in float32.
    init = [np.float32(m) + np.float32(s) * np.random.default_rng([seed, k]).standard_normal(
        shape, dtype=np.float32) for k, (shape, m, s) in enumerate(zip(shapes, data["means"], data["stds"]))]
    np.testing.assert_allclose([v.astype(np.float64).sum() for v in init], data["init_sums"], rtol=1e-12)
    rng = np.random.default_rng([seed, 10_000])
    b, (h, w) = int(data["batch"]), (int(x) for x in data["size"])
    grd = rng.standard_normal((b, h, w, 3), dtype=np.float32)
    sat = rng.standard_normal((b, h, w, 3), dtype=np.float32)
    np.testing.assert_allclose([grd.astype(np.float64).sum(), sat.astype(np.float64).sum()],
                               data["batch_sums"], rtol=1e-12)
    return data, names, shapes, init, grd, sat


def _run_geobench(golden, tmp_path, steps: int, dtype: torch.dtype, keep_grads: tuple[str, ...] = ()):
    """geobench's train step `steps` times with the safa card's recipe, from the fixture's start."""
    data, names, shapes, init, grd, sat = golden
    torch.manual_seed(0)
    size = tuple(int(x) for x in data["size"])
    # Dropout off: the fixture ran with keep_prob 1 (TensorFlow's masks are not reproducible).
    with torch.device("meta"):  # every weight comes from the fixture: skip 30 M random draws
        model = build_model("safa", input_size={"ground": size, "polar": size}, heads=int(data["heads"]),
                            dropout=0.0)
    model = model.to_empty(device="cpu").to(dtype)
    params = dict(model.named_parameters())
    mapped = [_to_geobench(n) for n in names]
    assert sorted(m for m, _ in mapped) == sorted(params), "every parameter has its TF variable"
    with torch.no_grad():
        for (target, axes), value in zip(mapped, init):
            params[target].copy_(_from_tf(value, axes))
    cfg = resolve_config("safa", tmp_path / "data", tmp_path / "run")
    assert (cfg.optimizer, cfg.lr, cfg.schedule) == ("adam_tf", float(data["lr"]), "constant")
    loss_fn = build_loss(cfg.loss, **loss_options(cfg))
    optimizer = build_optimizer(cfg, list(params.values()))
    if dtype == torch.float64:
        # TensorFlow keeps lr, beta1, beta2 and epsilon as float32 tensors and casts them to
        # the variables' dtype: 1 - beta2 is then 1.3e-5 off. Use the same numbers.
        for group in optimizer.param_groups:
            group.update(lr=f32(group["lr"]), betas=tuple(map(f32, group["betas"])), eps=f32(group["eps"]))
    scheduler = build_scheduler(cfg, optimizer, steps, steps)
    parts = step_parts(model, loss_fn, optimizer, scheduler)
    batch = tuple(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(dtype) for x in (grd, sat))
    model.train()
    outputs, grads = [], []
    for _ in range(steps):
        outputs.append(train_step(parts, batch, record_grads=True))
        grads.append({n: params[n].grad.clone() for n in keep_grads})  # kept until the next step
    return outputs, params, mapped, grads


def f32(x) -> float:
    return float(np.float32(x))


def _norms(outputs, mapped) -> np.ndarray:
    return np.array([[o.grad_norms[m] for m, _ in mapped] for o in outputs])


def test_first_step_in_float32_equals_the_official_step(golden, tmp_path):
    data = golden[0]
    outputs, _, mapped, _ = _run_geobench(golden, tmp_path, 1, torch.float32)
    np.testing.assert_allclose(outputs[0].loss, data["float32_loss"][0], rtol=2e-6, atol=0)
    # fp32 rounding of two frameworks' kernels (see the generator's doc), not a formula.
    np.testing.assert_allclose(_norms(outputs, mapped), data["float32_grad_norms"], rtol=2e-3, atol=0)


def test_three_steps_in_float64_equal_the_official_training(golden, tmp_path):
    data, names, shapes, init, _, _ = golden
    heads = ("towers.query.aggregator.b1", "towers.reference.aggregator.w1")
    outputs, params, mapped, grads = _run_geobench(golden, tmp_path, 3, torch.float64, heads)

    # Loss with SAFA's B x B sum over B(B-1) (count_diagonal). Observed: equal to ~5e-15.
    losses = np.array([o.loss for o in outputs])
    np.testing.assert_allclose(losses, data["float64_loss"], rtol=1e-12, atol=0)
    assert losses[0] > losses[1] > losses[2]
    # Observed: 1.4e-13 relative at worst.
    np.testing.assert_allclose(_norms(outputs, mapped), data["float64_grad_norms"], rtol=1e-11, atol=0)

    for k, ((target, axes), shape, start) in enumerate(zip(mapped, shapes, init)):
        update = _to_tf(params[target].detach(), axes, shape).reshape(-1) - start.reshape(-1)
        idx = data[f"idx_{k}"]
        # Updates are ~1e-5 per step: compare them, not the weights, so an epsilon in the
        # wrong place cannot hide under the weights' rounding. Observed: 7e-17 at worst.
        np.testing.assert_allclose(update[idx], data[f"float64_update_{k}"], rtol=1e-9, atol=1e-15,
                                   err_msg=names[k])
        np.testing.assert_allclose(np.linalg.norm(update), data["float64_update_norms"][k],
                                   rtol=1e-10, err_msg=names[k])

    # torch's Adam on the same gradients misses the official updates: the epsilon placement
    # (TensorFlow's is 32x torch's at step 1) matters for the heads' small gradients.
    for target in heads:
        k = [m for m, _ in mapped].index(target)
        axes, idx = mapped[k][1], data[f"idx_{k}"]
        start = _from_tf(init[k], axes).to(torch.float64)
        for optimizer in (torch.optim.Adam, TFAdam):
            p = start.clone().requires_grad_()
            opt = optimizer([p], lr=f32(data["lr"]), betas=(f32(0.9), f32(0.999)), eps=f32(1e-8))
            for step in grads:
                p.grad = step[target]
                opt.step()
            replay = _to_tf((p.detach() - start), axes, shapes[k]).reshape(-1)[idx]
            err = np.abs(replay - data[f"float64_update_{k}"]).max()
            scale = np.abs(data[f"float64_update_{k}"]).max()
            assert (err < 1e-9 * scale) if optimizer is TFAdam else (err > 1e-2 * scale), (target, optimizer, err)
