"""Crop runs over folders and prepared datasets: outputs, crops.csv, crops.json, indexing.

`crop_folder` crops every panorama under a folder (or list file) into DST, mirroring the
relative paths. `crop_dataset` crops the panoramas of a prepared dataset and writes a new
prepared dataset whose queries are the crops (view "perspective", or "ground" for shift
strips), so a panorama dataset becomes a limited-FOV / perspective-query benchmark.
Every crop is a row of DST/crops.csv (source, output, yaw, pitch, fov, heading); the
run's parameters are in DST/crops.json; the same seed reproduces the same crops.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from geobench.errors import DataError, Interrupted, UsageError
from geobench.fileio import atomic_open, write_json
from geobench.geometry.crops import CropParams, crop_image

CSV, JSON, SCHEMA = "crops.csv", "crops.json", "geobench.crops/1"
CSV_COLUMNS = ("source", "output", "yaw", "pitch", "fov", "heading")
REFERENCES = ("panorama", "keep")


@dataclass
class CropReport:
    dst: Path
    params: CropParams
    written: int
    skipped: int
    failed: list[tuple[str, str]]
    rows: pd.DataFrame
    seconds: float
    prepared: Any = None  # the written Prepared in dataset mode
    notes: list[str] = field(default_factory=list)  # warnings for the user

    def raise_for_failures(self) -> None:
        if self.failed:
            more = f" (and {len(self.failed) - 1} more, listed in {self.dst / JSON})" \
                if len(self.failed) > 1 else ""
            raise DataError(f"{self.failed[0][1]}{more}; the other crops were written, fix or "
                            f"remove the failed images and re-run to finish")


@dataclass(frozen=True)
class _Source:
    path: Path
    rel: PurePosixPath
    heading: float  # compass heading of the panorama's centre column


def _outputs(rel: PurePosixPath, params: CropParams) -> list[PurePosixPath]:
    ext = "." + params.format
    if params.per_image == 1:
        return [rel.with_suffix(ext)]
    return [rel.with_name(f"{rel.stem}_{k:02d}{ext}") for k in range(params.per_image)]


def _load_previous(json_path: Path, csv_path: Path, params: CropParams
                   ) -> tuple[float | None, dict[str, dict]]:
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        if meta.get("parameters") != params.to_json():
            return None, {}
        rows = pd.read_csv(csv_path, keep_default_na=False)
        return float(meta["stale_before"]), {r["output"]: r for r in rows.to_dict("records")}
    except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None, {}


def _files(dst: Path, shard: Any) -> tuple[Path, Path]:
    """(record, rows) of a whole run, or of one shard (kept in dst/.shards until the merge)."""
    if shard is None:
        return dst / JSON, dst / CSV
    from geobench.shard import record_path

    record = record_path(dst, "crop", shard)
    return record, record.with_suffix(".csv")


def crop_sources(sources: list[_Source], dst: str | Path, params: CropParams,
                 workers: int = 1, strict: bool = False, origin: str = "",
                 shard: Any = None) -> CropReport:
    """`shard` (geobench.shard.Shard): crop only its contiguous share of `sources`."""
    from geobench.geometry.imagerun import ImageJob, check_unique_outputs, run_jobs, up_to_date
    from geobench.prepared import versions

    t0 = time.perf_counter()
    dst = Path(dst)
    outs = [_outputs(s.rel, params) for s in sources]
    jobs = [ImageJob(str(s.path), tuple(str(dst / o) for o in out), s.rel.as_posix())
            for s, out in zip(sources, outs, strict=False)]
    check_unique_outputs(jobs)  # over every share, so shards cannot collide either
    total = len(sources)
    if shard is not None:
        start, end = shard.share(total)
        sources, outs, jobs = sources[start:end], outs[start:end], jobs[start:end]
    json_path, csv_path = _files(dst, shard)
    notes = _not_panoramas(sources)
    stale_before, old_rows = _load_previous(json_path, csv_path, params)
    record: dict[str, Any] = {"schema": SCHEMA, "parameters": params.to_json(), "source": origin,
                              "stale_before": stale_before or time.time(), "complete": False,
                              "versions": versions(),
                              "conventions": "yaw: degrees clockwise from the panorama's "
                              "centre column; heading: compass heading of the crop centre "
                              "(panorama centre = its index heading, else north)"}
    if shard is not None:
        from geobench.shard import shard_fields

        record["shard"] = shard_fields(shard, total)
    if stale_before is None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, record)
    reuse = [stale_before is not None and up_to_date(job, stale_before)
             and all(o.as_posix() in old_rows for o in out) for job, out in zip(jobs, outs, strict=False)]
    todo = [job for job, r in zip(jobs, reuse, strict=False) if not r]
    interrupted = None
    try:
        finished = run_jobs(todo, crop_image, params, workers=workers, strict=strict,
                            description=f"{params.mode} crops")
    except KeyboardInterrupt as exc:
        # Record the crops that finished (complete files, atomically written) so the
        # re-run skips them, then say so.
        interrupted, finished = exc, getattr(exc, "partial_results", None) or [None] * len(todo)
    results = iter(finished)
    rows, failed, written = [], [], 0
    for src, job, out, reused in zip(sources, jobs, outs, reuse, strict=False):
        if reused:
            rows.extend(old_rows[o.as_posix()] for o in out)
            continue
        res = next(results)
        if res is None:  # not finished before the interrupt
            continue
        if not res.ok:
            failed.append((job.src, res.error))
            continue
        written += 1
        for o, info in zip(out, res.infos, strict=False):
            rows.append({"source": src.rel.as_posix(), "output": o.as_posix(),
                         "yaw": round(info["yaw"], 6), "pitch": info["pitch"],
                         "fov": round(info["fov"], 6),
                         "heading": round(float((src.heading + info["yaw"]) % 360.0), 6)})
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    with atomic_open(csv_path, "w") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")
    record.update(complete=not failed and interrupted is None, count=len(frame),
                  failed=[{"path": p, "error": e} for p, e in failed])
    write_json(json_path, record)
    if interrupted is not None:
        raise Interrupted(f"interrupted; {written + sum(reuse)} of {len(sources)} panoramas "
                          f"are cropped, recorded in {csv_path} and kept; re-run the same "
                          f"command to continue (finished crops are skipped)") from None
    return CropReport(dst, params, written, sum(reuse), failed, frame,
                      time.perf_counter() - t0, notes=notes)


PANORAMA_ASPECT = 1.9  # a 360-degree panorama is at least ~2:1 (CVUSA's band is 5.5:1)


def _not_panoramas(sources: list[_Source], sample: int = 8) -> list[str]:
    """A warning when the first images are not 360-degree panoramas (by aspect ratio).

    Crops treat the image width as 360 degrees; a normal photo cropped this way gives
    views with the wrong field of view and heading, without any error.
    """
    from geobench.doctor import image_header

    odd: list[tuple[Path, int, int]] = []
    for src in sources[:sample]:
        try:
            h, w = image_header(src.path)
        except (ValueError, OSError):
            continue  # damaged files are reported by the crop run itself
        if w < PANORAMA_ASPECT * h:
            odd.append((src.path, w, h))
    if not odd:
        return []
    path, w, h = odd[0]
    more = f" and {len(odd) - 1} more of the first {min(sample, len(sources))}" if len(odd) > 1 else ""
    return [f"{path} is {w}x{h} (width/height {w / h:.2f}){more}: not a 360-degree panorama "
            f"(width >= {PANORAMA_ASPECT:g} x height); crops treat the full width as 360 "
            f"degrees, so their field of view and heading would be wrong"]


def crop_folder(src: str | Path, dst: str | Path, params: CropParams, workers: int = 1,
                strict: bool = False, shard: Any = None) -> CropReport:
    """Crop every panorama under a folder (or list file); panoramas are taken as north-
    centred (CVUSA / VIGOR convention), so heading = yaw. `shard`: a Shard crops its share
    (records in dst/.shards); "merge" checks every share and writes crops.json / crops.csv."""
    from geobench.geometry.imagerun import list_sources

    found = list_sources(src, exclude=dst)
    sources = [_Source(p, r, 0.0) for p, r in found]
    if shard == "merge":
        return merge_crops(sources, Path(dst), params, origin=str(src))
    return crop_sources(sources, dst, params, workers, strict, origin=str(src), shard=shard)


def merge_crops(sources: list[_Source], dst: Path, params: CropParams, origin: str) -> CropReport:
    """Check every shard of a `--shard I/N` crop run, then write the crops.csv (the shards'
    rows in source order) and crops.json one whole run writes."""
    from geobench import shard as shards
    from geobench.fileio import remove_stale_temps

    t0 = time.perf_counter()
    command = f"geobench crop {origin} {dst}"
    records = shards.collect(dst, "crop", len(sources), params.to_json(), command)
    frames = []
    for rec in records:
        path = shards.record_path(dst, "crop", shards.Shard(rec["shard"]["index"],
                                                             rec["shard"]["count"]))
        try:
            frames.append(pd.read_csv(path.with_suffix(".csv"), keep_default_na=False,
                                      dtype={"source": str, "output": str}))
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            raise DataError(f"{path.with_suffix('.csv')}: unreadable crop rows; re-run shard "
                            f"{rec['shard']['index']}/{rec['shard']['count']}") from None
    frame = pd.concat(frames, ignore_index=True)
    missing = [o for o in frame["output"] if not (dst / o).is_file()]
    if missing:
        raise DataError(f"{dst / missing[0]}: missing although its shard finished "
                        f"({len(missing)} crops in all); re-run the shard that holds it, then "
                        f"merge again")
    remove_stale_temps(dst)  # shards leave other machines' temporaries alone
    with atomic_open(dst / CSV, "w") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")
    record = {k: v for k, v in records[0].items() if k != "shard"}
    record.update(source=origin, stale_before=min(float(r["stale_before"]) for r in records),
                  complete=True, count=len(frame), failed=[])
    write_json(dst / JSON, record)
    for rec in records:
        shards.record_path(dst, "crop", shards.Shard(rec["shard"]["index"], rec["shard"]["count"])
                           ).with_suffix(".csv").unlink(missing_ok=True)
    shards.remove_records(dst, "crop")
    return CropReport(dst, params, 0, len(sources), [], frame, time.perf_counter() - t0)


def crop_dataset(ds: str | Path, out: str | Path, params: CropParams, *,
                 split: str | None = None, references: str = "panorama", workers: int = 1,
                 strict: bool = False) -> CropReport:
    """Crop the ground panoramas of a prepared dataset and write OUT as a prepared dataset.

    Queries: one row per crop (view "perspective", or "ground" for shift strips), with the
    source panorama's location and item and the crop's heading. references="panorama": the
    cropped panoramas become the references and each crop's positive is its own panorama
    (add GPS neighbours with `geobench mine`); "keep": the source references stay and each
    crop inherits its panorama's positives.
    """
    from geobench.prepared import read_prepared

    if references not in REFERENCES:
        raise UsageError(f"references {references!r} is not one of {' | '.join(REFERENCES)}")
    src = read_prepared(ds)
    index = src.index if split is None else src.index[src.index["split"] == split]
    panos = index[index["view"] == "ground"]
    if references == "keep" or (panos["role"] == "query").any():
        panos = panos[panos["role"] == "query"]
    if panos.empty:
        raise DataError(f"{Path(ds) / 'index.csv'}: no ground panoramas"
                        f"{' in split ' + split if split else ''} to crop; pick a panorama "
                        f"dataset (CVUSA, VIGOR, synthetic)")
    out = Path(out)
    heading = pd.to_numeric(panos["heading"], errors="coerce").fillna(0.0).to_numpy()
    sources = [_Source(src.resolve(p), PurePosixPath(p), float(h))
               for p, h in zip(panos["path"], heading, strict=False)]
    report = crop_sources(sources, out / "crops", params, workers, strict, origin=str(ds))
    report.prepared = _index_crops(src, index, panos, report.rows, out, params, references)
    return report


def _index_crops(src: Any, index: pd.DataFrame, panos: pd.DataFrame, rows: pd.DataFrame,
                 out: Path, params: CropParams, references: str) -> Any:
    from geobench.prepared import write_prepared

    by_path = panos.set_index("path")
    view = "perspective" if params.mode == "perspective" else "ground"
    queries = []
    for r in rows.itertuples(index=False):
        pano = by_path.loc[r.source]
        queries.append({**pano.to_dict(), "uid": f"{pano['uid']}#{Path(r.output).stem}",
                        "role": "query", "view": view, "path": f"crops/{r.output}",
                        "heading": r.heading, "_pano": pano["uid"]})
    qframe = pd.DataFrame(queries)
    if references == "panorama":
        refs = panos.assign(role="reference")
        pos = pd.DataFrame({"split": qframe["split"], "query": qframe["uid"],
                            "reference": qframe["_pano"], "kind": "positive", "distance_m": 0.0})
    else:
        refs = index[index["role"] == "reference"]
        old = src.positives.rename(columns={"query": "_pano"})
        pos = qframe[["uid", "_pano"]].merge(old, on="_pano").rename(columns={"uid": "query"})
    refs = refs.assign(path=[_raw_relative(src, p) for p in refs["path"]])
    new_index = pd.concat([qframe.drop(columns="_pano"), refs], ignore_index=True)
    params_json = dict(src.manifest.get("parameters", {}))
    params_json["crops"] = {**params.to_json(), "references": references, "source_dataset":
                            str(src.root)}
    return write_prepared(out, new_index, pos.drop(columns="_pano", errors="ignore"),
                          dataset=f"{src.name or 'dataset'}-{params.mode}",
                          raw_root=src.raw_root, parameters=params_json,
                          derived_dirs=["crops"])


def _raw_relative(src: Any, rel: str) -> str:
    """Index path of a kept source row, valid under the new dataset's raw root."""
    absolute = src.resolve(rel)
    try:
        return PurePosixPath(absolute.relative_to(src.raw_root)).as_posix()
    except ValueError:
        return str(absolute.resolve())  # a derived image of the source dataset


def summary(report: CropReport) -> dict[str, Any]:
    yaw = report.rows["yaw"].to_numpy(dtype=float) if len(report.rows) else np.array([])
    return {"crops": len(report.rows), "written": report.written, "skipped": report.skipped,
            "failed": len(report.failed), "mean |yaw|": float(np.abs(yaw).mean()) if yaw.size
            else 0.0, "seconds": round(report.seconds, 2)}
