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
from geobench.errors import DiskFullError, Interrupted, UsageError
from geobench.fileio import disk_full, is_disk_full, write_json

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
    interrupted run leaves no half-written dataset. Same options, same bytes: a finished
    world with these options (a run stopped after it, before indexing) is reused as it is.
    """
    from geobench.datasets.synthetic import layout_vigor, layouts

    diff = difficulty_of(options)
    n_test = n_test_pairs(options, diff)
    out = Path(options.out)
    description = _describe(options, diff, n_test)
    if not options.overwrite and _same_world(out, description):
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not options.overwrite:
        raise UsageError(f"{out}: already exists and is not empty; choose another --out or "
                         f"pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial"
    state = _reuse_partial(tmp, description)
    try:
        if state != "complete":
            writer = {"cvusa": layouts.write_cvusa, "vigor": layout_vigor.write_vigor,
                      "vg": layouts.write_vg}[options.layout]
            rows = writer(options, diff, tmp, n_test)
            layouts.write_locations(tmp, rows)
            write_json(tmp / META_FILE, description)  # last: it marks the tree complete
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
                          f"{' (this run had resumed from it)' if state != 'fresh' else ''}; "
                          f"re-run the same command to continue from them") from None
    except DiskFullError:
        raise  # it says the completed files are kept, and the re-run continues from them
    except OSError as exc:
        if not is_disk_full(exc, tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        raise disk_full(tmp, 0) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _same_world(folder: Path, description: dict[str, Any]) -> bool:
    """`folder` holds a finished world generated with these options (its synthetic.json,
    written last, says so)."""
    import json

    try:
        return json.loads((folder / META_FILE).read_text(encoding="utf-8")) == json.loads(
            json.dumps(description, default=str))
    except (OSError, ValueError):
        return False


def _reuse_partial(tmp: Path, description: dict[str, Any]) -> str:
    """Resume into `tmp` if an interrupted run with identical options left it; else start
    it empty. Returns "complete" (only the final rename was missing), "resumed" or "fresh"."""
    import json

    if _same_world(tmp, description):
        return "complete"
    marker = tmp / PARTIAL_FILE
    try:
        same = json.loads(marker.read_text(encoding="utf-8")) == json.loads(
            json.dumps(description, default=str))
    except (OSError, ValueError):
        same = False
    if same:
        return "resumed"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_json(marker, description)
    return "fresh"


def prepare_synthetic(options: SyntheticOptions, ds: str | Path,
                      adapter_options: Mapping[str, Any] | None = None):
    """generate() into options.out, then index it with the layout's adapter into `ds`."""
    from geobench.datasets import prepare_dataset

    raw = generate(options)
    try:
        return prepare_dataset(options.layout, raw, Path(ds), dict(adapter_options or {}),
                               label=f"synthetic-{options.layout}")
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted before the index was written; the generated world in "
                          f"{raw} is complete and kept; re-run the same command to index it "
                          f"(the world is not rendered again)") from None
