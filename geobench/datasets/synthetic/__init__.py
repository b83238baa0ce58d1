"""The synthetic cross-view world: procedural towns rendered into real dataset layouts.

`generate(SyntheticOptions(out=RAW, layout="cvusa"|"vigor"|"vg", ...))` writes the raw
layout of the named real dataset under RAW (and nothing else but `synthetic.json` and
`synthetic_locations.csv`), so the ordinary adapters index it. `prepare_synthetic` then
runs that adapter. Modules: town (plans), sites (districts sized to the requested
locations), world (rasters, captures), render (cameras), difficulty (knobs, presets), scene
(built towns, cameras), pool (rendering in processes), layouts / layout_vigor (writers).
"""
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geobench.datasets.synthetic.difficulty import PRESETS, Difficulty, resolve_difficulty
from geobench.datasets.synthetic.options import LAYOUTS, SyntheticOptions
from geobench.datasets.synthetic.pool import remove_journals
from geobench.errors import Interrupted, UsageError
from geobench.fileio import write_json

__all__ = ["SyntheticOptions", "Difficulty", "PRESETS", "LAYOUTS", "generate",
           "prepare_synthetic", "plan_sites", "difficulty_of", "GENERATOR_VERSION"]

GENERATOR_VERSION = "2"
META_FILE = "synthetic.json"
PARTIAL_FILE = ".partial.json"  # options of the run that writes a .partial folder


def difficulty_of(options: SyntheticOptions) -> Difficulty:
    return resolve_difficulty(options.preset, options.difficulty)


def n_test_pairs(options: SyntheticOptions, diff: Difficulty) -> int:
    return int(options.test_pairs if options.test_pairs is not None else diff.test_pairs)


def plan_sites(options: SyntheticOptions) -> list:
    """Where generate() would put every image (districts and picked locations, as
    `sites.Site`s), without rendering anything: cheap even for 100k pairs."""
    from geobench.datasets.synthetic import layout_vigor, layouts

    diff = difficulty_of(options)
    n_test = n_test_pairs(options, diff)
    if options.layout == "vg":
        return [site for _, split_sites in layouts.plan_vg(options, diff, n_test)
                for site in split_sites]
    planner = layouts.plan_cvusa if options.layout == "cvusa" else layout_vigor.plan_vigor
    return planner(options, diff, options.pairs + n_test)


def _describe(options: SyntheticOptions, diff: Difficulty, n_test: int) -> dict[str, Any]:
    # workers and overwrite change how, not what, is written: leave them out
    opts = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
            if f.name not in ("workers", "overwrite")}
    opts["out"] = str(options.out)
    aerial, ground = options.sizes
    return {"generator": "geobench.datasets.synthetic", "version": GENERATOR_VERSION,
            "options": opts, "difficulty": dataclasses.asdict(diff), "test_pairs": n_test,
            "aerial_size": aerial, "ground_size": list(ground),
            "raster_res_m": options.raster_res,
            "conventions": "panoramas: north at the centre column, headings clockwise; "
                           "aerials: north-up, camera at pixel (S/2, S/2) plus any offset"}


def generate(options: SyntheticOptions) -> Path:
    """Write the raw layout into options.out and return that path.

    The tree is written beside `out` and renamed into place only when complete, so an
    interrupted run leaves no half-written dataset. Same options, same bytes.
    """
    from geobench.datasets.synthetic import layout_vigor, layouts

    diff = difficulty_of(options)
    n_test = n_test_pairs(options, diff)
    out = Path(options.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not options.overwrite:
        raise UsageError(f"{out}: already exists and is not empty; choose another --out or "
                         f"pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial"
    description = _describe(options, diff, n_test)
    resumed = _reuse_partial(tmp, description)
    try:
        writer = {"cvusa": layouts.write_cvusa, "vigor": layout_vigor.write_vigor,
                  "vg": layouts.write_vg}[options.layout]
        rows = writer(options, diff, tmp, n_test)
        layouts.write_locations(tmp, rows)
        write_json(tmp / META_FILE, description)
        remove_journals(tmp)
        (tmp / PARTIAL_FILE).unlink(missing_ok=True)
        if out.exists():
            trash = out.parent / f".{out.name}.old"
            shutil.rmtree(trash, ignore_errors=True)
            out.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        tmp.rename(out)
    except KeyboardInterrupt:
        # Keep what is finished: every image is complete (written atomically) and recorded.
        raise Interrupted(f"interrupted; the images finished so far are kept in {tmp}"
                          f"{' (this run had resumed from it)' if resumed else ''}; re-run the "
                          f"same command to continue from them") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _reuse_partial(tmp: Path, description: dict[str, Any]) -> bool:
    """Resume into `tmp` if an interrupted run with identical options left it; else start
    it empty. Returns whether a partial run is resumed."""
    import json

    marker = tmp / PARTIAL_FILE
    try:
        same = json.loads(marker.read_text(encoding="utf-8")) == json.loads(
            json.dumps(description, default=str))
    except (OSError, ValueError):
        same = False
    if same:
        return True
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_json(marker, description)
    return False


def prepare_synthetic(options: SyntheticOptions, ds: str | Path,
                      adapter_options: Mapping[str, Any] | None = None):
    """generate() into options.out, then index it with the layout's adapter into `ds`."""
    raw = generate(options)
    try:
        from geobench.datasets import prepare_dataset
    except ImportError as exc:  # the adapters land with another issue
        raise UsageError(f"the {options.layout} adapter is not available yet ({exc}); the raw "
                         f"layout is written to {raw}") from None
    return prepare_dataset(options.layout, raw, Path(ds), dict(adapter_options or {}),
                           label=f"synthetic-{options.layout}")
