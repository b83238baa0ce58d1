"""The dataset adapter registry.

An adapter is a function decorated with `register_dataset()`; its name is the key used
by `geobench prepare NAME`. The dataset's card is its entry in `datasets.yaml`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from geobench.registry import Registry

DATASETS: Registry[Callable[..., Any]] = Registry("dataset", "geobench datasets")
register_dataset = DATASETS.register
