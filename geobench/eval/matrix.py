"""Models x datasets in one command: `geobench eval --model A,B --pretrained X,Y --data D1,D2`.

Each (model, weights, dataset) pair is evaluated into its own folder,
`OUT/<model>+<weights>/<prepared folder name>/` (features.h5, results.h5, metrics.csv, as `eval --model`
writes them), so `geobench report OUT` tables them all. A pair whose results.h5 and
metrics.csv exist is finished and skipped: an interrupted matrix resumes where it stopped,
and the descriptors of a finished pair are never computed again. Everything (models,
catalog entries, unpinned files, prepared datasets, folder names) is checked before the
first pair runs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geobench.errors import UsageError


@dataclass(frozen=True)
class Pair:
    model: str
    pretrained: str      # a catalog entry, imagenet or none
    data: Path
    folder: str          # relative to the matrix's --out

    @property
    def label(self) -> str:
        return f"{self.model}+{self.pretrained} on {self.data}"


def split_list(value: str | None, option: str) -> list[str]:
    """`a,b` -> [a, b]; an empty item is an error naming the option."""
    if value is None:
        return []
    items = [v.strip() for v in str(value).split(",")]
    if not all(items):
        raise UsageError(f"{option} {value!r}: an empty name in the list; write NAME,NAME")
    return items


def released_defaults(catalog: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(model, entry) for `--all-released`: each registered model's released file for its
    default architecture (CosPlace/EigenPlaces: ResNet-50 2048-D), in catalog order."""
    from geobench.models import describe
    from geobench.models.pretrained import load_weights_catalog

    catalog = load_weights_catalog() if catalog is None else catalog
    chosen: dict[str, str] = {}
    for entry in catalog.values():
        if entry.loads != "model":
            continue
        for model in entry.models:
            defaults = describe(model)["arguments"]
            if model not in chosen and all(defaults.get(k) == v for k, v in entry.model_args):
                chosen[model] = entry.name
    return list(chosen.items())


def plan_matrix(models: list[str], pretrained: list[str], datasets: list[Path], *,
                all_released: bool = False, preset: str | None = None,
                allow_unpinned: bool = False) -> list[Pair]:
    """The pairs to evaluate, validated (see module doc); no weights are fetched here."""
    from geobench.models import describe
    from geobench.models.initial import backbone_of
    from geobench.models.pretrained import CHOICES, check_unpinned, choose
    from geobench.prepared import read_prepared

    if all_released:
        if models or pretrained:
            raise UsageError("--all-released picks every released model and its file: drop "
                             "--model/--pretrained, or list them instead of --all-released")
        pairs = released_defaults()
    else:
        if not models:
            raise UsageError("a matrix needs --model A,B (or --all-released)")
        if not pretrained:
            raise UsageError("--model A,B: pass --pretrained X,Y (one per model, or one for all)")
        if len(pretrained) not in (1, len(models)):
            raise UsageError(f"--pretrained lists {len(pretrained)} names for {len(models)} "
                             f"models; give one per model, in the same order, or one for all")
        pairs = list(zip(models, pretrained * len(models) if len(pretrained) == 1 else pretrained,
                         strict=True))
    if not datasets:
        raise UsageError("--data DS1,DS2: at least one prepared dataset")
    for model, choice in pairs:
        describe(model)  # an unknown model fails here, naming the registered ones
        if choice not in CHOICES:
            entry = choose(choice, backbone_of(model, preset), model)
            if entry is not None:
                check_unpinned(entry, allow_unpinned)
    for data in datasets:
        read_prepared(data)  # a missing or broken dataset fails before any work
    # Named by the prepared folder, not the dataset: ds/msls-740 and ds/msls-all differ.
    names = [Path(data).absolute().name for data in datasets]
    if len(set(names)) != len(names):
        raise UsageError(f"--data: two prepared folders are both named {_dup(names)!r}; their "
                         f"result folders would collide, rename one")
    if len(set(pairs)) != len(pairs):
        raise UsageError(f"--model/--pretrained: {_dup(pairs)} is listed twice")
    return [Pair(model, choice, Path(data), f"{model}+{choice}/{name}")
            for model, choice in pairs for data, name in zip(datasets, names, strict=True)]


def _dup(items: list[Any]) -> Any:
    return next(x for i, x in enumerate(items) if x in items[:i])


def finished(out: Path, pair: Pair) -> bool:
    folder = out / pair.folder
    return (folder / "results.h5").is_file() and (folder / "metrics.csv").is_file()


def run_matrix(pairs: list[Pair], out: str | Path, evaluate: Callable[[Pair, Path], Any],
               on_pair: Callable[[Pair, str], None] = lambda pair, status: None) -> list[Path]:
    """Evaluate each unfinished pair with `evaluate(pair, folder)`; returns every folder.

    `on_pair(pair, status)` hears "skipped" (finished before) or "done" for each pair.
    """
    out = Path(out)
    folders = []
    for pair in pairs:
        folder = out / pair.folder
        if finished(out, pair):
            on_pair(pair, "skipped")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            evaluate(pair, folder)
            on_pair(pair, "done")
        folders.append(folder)
    return folders
