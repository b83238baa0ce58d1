"""Deterministic weights and inputs by parameter name, shared by golden-fixture generators
(run in side environments against official code) and the tests that compare geobench.

Both sides build the network with random initialisation, then overwrite every tensor of the
state dict with `fill(name, shape)`: numpy's legacy generator seeded by the name's CRC32, so
the same name gives the same values in any environment, and no weights need to be stored.
"""
from __future__ import annotations

import zlib

import numpy as np


def fill(name: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    values = rng.standard_normal(shape).astype(np.float32)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "gamma":  # layer scale: small, as after training
        values = 0.1 + 0.02 * values
    elif leaf == "running_var":  # batch-norm variances must be positive
        values = 1.0 + 0.1 * np.abs(values)
    elif len(shape) == 1 and leaf == "weight" and ("norm" in name or ".bn" in name
                                                   or name.startswith("bn")):
        values = 1.0 + 0.1 * values
    elif name.endswith("dust_bin"):
        values = 1.0 + 0.1 * values
    else:
        values = 0.02 * values
    return np.asarray(values, dtype=np.float32)


def fill_state(state: dict) -> dict:
    """{name: numpy array} for every floating tensor of a state dict (others kept)."""
    out = {}
    for name, tensor in state.items():
        if tensor.dtype.is_floating_point:
            out[name] = fill(name, tuple(tensor.shape))
    return out


def images(seed: int, n: int, h: int, w: int) -> np.ndarray:
    """A normalised-looking float32 batch (n, 3, h, w)."""
    return np.random.RandomState(seed).standard_normal((n, 3, h, w)).astype(np.float32)
