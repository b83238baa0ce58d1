"""Dataset adapters: one code path from a raw layout to a prepared dataset.

`prepare_dataset(name, root, out, options)` looks the adapter up in DATASETS, lets it
read the raw layout into rows and writes them with `geobench.prepared.write_prepared`.
Importing this package registers the adapters of every real dataset.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geobench.datasets import cvact, cvusa, university1652, vg, vigor  # noqa: F401  (registers)
from geobench.datasets.common import Adapted, check_missing
from geobench.datasets.registry import DATASETS
from geobench.errors import DataError, UsageError
from geobench.prepared import Prepared, write_prepared

__all__ = ["prepare_dataset", "adapt", "Adapted", "DATASETS"]


def adapt(name: str, root: Path, out: Path, options: Mapping[str, Any] | None = None) -> Adapted:
    """Run the adapter of `name` on `root` without writing anything (doctor uses this)."""
    adapter = DATASETS.get(name)
    return adapter(Path(root), Path(out), dict(options or {}))


def prepare_dataset(name: str, root: Path, out: Path,
                    options: Mapping[str, Any] | None = None, *,
                    label: str | None = None) -> Prepared:
    """Index the raw copy of dataset `name` at `root` into the prepared directory `out`.

    Options are the adapter's (e.g. {"polar": True, "polar_size": (112, 616)} for
    cvusa, {"protocol": "cross"} for vigor); `strict` makes any missing image fatal,
    otherwise missing images are skipped and counted in the manifest. `label` names the
    result in its manifest when it differs from the layout (the synthetic world written
    in the CVUSA layout is not CVUSA). The manifest records the evaluation protocol.
    """
    if root is None:
        raise UsageError(f"prepare {name}: --root is required (the folder of your raw copy)")
    options = dict(options or {})
    strict = bool(options.get("strict", False))
    adapted = adapt(name, Path(root), Path(out), options)
    check_missing(adapted, name, strict)
    if strict:
        check_images(adapted, Path(out))
    missing = {view: len(paths) for view, paths in adapted.missing.items() if paths}
    extra = {"protocol": adapted.protocol or _catalog_protocol(name),
             "missing_images": missing,
             "missing_examples": [p for v in adapted.missing.values() for p in v[:3]][:10]}
    return write_prepared(out, adapted.index, adapted.positives, dataset=label or name,
                          raw_root=adapted.raw_root, parameters=adapted.parameters,
                          derived_dirs=adapted.derived_dirs, extra=extra)


def check_images(adapted: Any, out: Path) -> None:
    """`--strict`: fully decode every indexed image; the first damaged one is an error.

    Catches what a header check cannot: JPEGs cut short or with flipped bytes that OpenCV
    would otherwise decode half grey (see geobench.imagefile).
    """
    from geobench.imagefile import check_image
    from geobench.progress import track

    seen: set[str] = set()
    derived = set(adapted.derived_dirs)
    for row in track(adapted.index, "checking images (--strict)"):
        rel = row["path"]
        if rel in seen:
            continue
        seen.add(rel)
        first = Path(rel).parts[0] if rel else ""
        base = out if first in derived else adapted.raw_root
        try:
            check_image(base / rel)
        except DataError as exc:
            raise DataError(f"{exc} (stopped at the first damaged image because of "
                            f"--strict)") from None


def _catalog_protocol(name: str) -> str:
    from geobench.catalog import load_catalog

    spec = load_catalog().get(name)
    return spec.default_protocol if spec is not None else "pairs"
