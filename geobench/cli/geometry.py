"""`geobench polar | crop | mine`: geometric preprocessing (polar transform, panorama
crops) and GPS mining of positives.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geobench.cli.common import (
    SHARD_HELP,
    WORKERS_HELP,
    Quiet,
    command,
    parse_size,
    print_table,
    shard_lock,
    warn,
)
from geobench.errors import UsageError, one_line
from geobench.guard import claim_output
from geobench.validation import DEFAULT_TRAIN_RADIUS


@command("polar", examples=["geobench polar data/CVUSA/bingmap/19 ds/polar --size 112x616 --workers 2",
                            "geobench polar data/CVUSA/bingmap/19 ds/polar --shard auto",
                            "geobench polar data/CVUSA/bingmap/19 ds/polar --shard merge"])
def polar_cmd(
    src: Annotated[Path, typer.Argument(help="Folder (recursive) or list file of aerial images.")],
    dst: Annotated[Path, typer.Argument(help="Output folder (mirrors SRC's relative paths).")],
    size: Annotated[str, typer.Option(help="Output size HxW.")] = "112x616",
    north: Annotated[str, typer.Option(help="center (SAFA code) | left (seed paper).")] = "center",
    radius: Annotated[str, typer.Option(help="safa: (S/2)(H-1-i)/H | seed: (S/2)(H-i)/H.")] = "safa",
    workers: Annotated[int, typer.Option(help=f"{WORKERS_HELP}).")] = 1,
    format: Annotated[str, typer.Option("--format", help="png | jpg.")] = "png",
    crop_square: Annotated[bool, typer.Option(help="Centre-crop non-square images.")] = False,
    stretch: Annotated[str, typer.Option(
        help="none | minmax: stretch each image to 0..255 as SAFA/DSM's published polar "
             "files are (for their released weights).")] = "none",
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable image.")] = False,
    shard: Annotated[Optional[str], typer.Option(help=SHARD_HELP)] = None,
    quiet: Quiet = False,
) -> None:
    """Polar-transform aerial images so they line up with north-centred panoramas."""
    from geobench.geometry.polar import PolarParams, polar_folder
    from geobench.shard import parse_shard

    params = PolarParams(size=parse_size(size, "--size"), north=north, radius=radius,
                         format=format, crop_square=crop_square, stretch=stretch)
    part = parse_shard(shard)
    with claim_output(dst, "polar", inputs={"SRC": src if src.is_dir() else None}, option="DST",
                      **shard_lock(part)):
        report = polar_folder(src, dst, params, workers=workers, strict=strict, shard=part)
    rate = report.written / report.seconds if report.seconds > 0 else 0.0
    print_table(f"polar {src} -> {dst}", ["images", "written", "skipped", "failed", "size",
                                          "north", "radius", "img/s"],
                [[report.total, report.written, report.skipped, len(report.failed), size,
                  north, radius, f"{rate:.1f}"]])
    for _path, reason in report.failed:
        typer.echo(f"failed: {one_line(reason)}", err=True)
    report.raise_for_failures()


@command("crop", examples=[
    "geobench crop data/CVUSA/streetview/panos ds/fov90 --fov 90 --mode shift",
    "geobench crop ds/synth ds/synth-persp --fov 90 --mode perspective --size 224x224",
])
def crop_cmd(
    src: Annotated[Path, typer.Argument(help="Folder or list file of panoramas, or a prepared "
                                        "dataset (then DST becomes a prepared dataset).")],
    dst: Annotated[Path, typer.Argument(help="Output folder.")],
    fov: Annotated[float, typer.Option(help="Horizontal field of view in degrees.")],
    mode: Annotated[str, typer.Option(help="shift | perspective.")] = "shift",
    yaw: Annotated[str, typer.Option(help="random or a heading in degrees.")] = "random",
    pitch: Annotated[float, typer.Option(help="Pitch in degrees (perspective).")] = 0.0,
    size: Annotated[Optional[str], typer.Option(help="Output size HxW.")] = None,
    per_image: Annotated[int, typer.Option(help="Crops per panorama.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    pad_offset: Annotated[float, typer.Option(help="Perspective: shift of a vertically cropped "
                                              "panorama's band centre, fraction of the 2:1 "
                                              "height (+ = down).")] = 0.0,
    format: Annotated[str, typer.Option("--format", help="jpg | png.")] = "jpg",
    references: Annotated[str, typer.Option(help="Dataset SRC: panorama (panoramas become the "
                                            "references) | keep.")] = "panorama",
    split: Annotated[Optional[str], typer.Option(help="Dataset SRC: only this split.")] = None,
    workers: Annotated[int, typer.Option(help=f"{WORKERS_HELP}).")] = 1,
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable image.")] = False,
    shard: Annotated[Optional[str], typer.Option(help=SHARD_HELP + " Folder SRC only.")] = None,
    quiet: Quiet = False,
) -> None:
    """Crop panoramas to a limited field of view (shifted strips or pinhole views)."""
    from geobench.geometry.crops import CropParams
    from geobench.geometry.cropset import crop_dataset, crop_folder
    from geobench.shard import parse_shard

    part = parse_shard(shard)
    dataset = (src / "manifest.json").is_file()
    if part is not None and dataset:
        raise UsageError(f"--shard: {src} is a prepared dataset; shards crop folders of "
                         f"panoramas (pass the dataset's panorama folder), or drop --shard")

    if yaw.strip().lower() == "random":
        yaw_deg = None
    else:
        try:
            yaw_deg = float(yaw)
        except ValueError:
            raise UsageError(f"--yaw {yaw!r} is neither 'random' nor a number of "
                             f"degrees") from None
    params = CropParams(fov=fov, mode=mode, yaw=yaw_deg, pitch=pitch,
                        size=parse_size(size, "--size") if size else None, per_image=per_image,
                        seed=seed, pad_offset=pad_offset, format=format)
    with claim_output(dst, "crop", inputs={"SRC": src if src.is_dir() else None}, option="DST",
                      **shard_lock(part)):
        if dataset:
            report = crop_dataset(src, dst, params, split=split, references=references,
                                  workers=workers, strict=strict)
            where = f"{dst} (prepared dataset, crops in {dst / 'crops'})"
        else:
            report = crop_folder(src, dst, params, workers=workers, strict=strict, shard=part)
            where = str(dst)
    print_table(f"{mode} crops -> {where}", ["panoramas", "crops", "written", "skipped",
                                            "failed", "fov", "seed"],
                [[report.written + report.skipped + len(report.failed), len(report.rows),
                  report.written, report.skipped, len(report.failed), f"{fov:g}", seed]])
    for _path, reason in report.failed:
        typer.echo(f"failed: {one_line(reason)}", err=True)
    for note in report.notes:
        warn(note)
    report.raise_for_failures()


@command("mine", examples=["geobench mine ds/sfxl --split test --radius 25"])
def mine_cmd(
    ds: Annotated[Path, typer.Argument(help="Prepared dataset directory.")],
    split: Annotated[str, typer.Option(help="Split to mine.")] = "test",
    radius: Annotated[float, typer.Option(help="Evaluation positive radius (m).")] = 25.0,
    train_radius: Annotated[Optional[float], typer.Option(
        help="Training positive radius (m); used for --split train only [10].")] = None,
    negative_radius: Annotated[float, typer.Option(help="Negatives lie beyond (m).")] = 25.0,
    metric: Annotated[str, typer.Option(help="auto | utm | latlon (great-circle).")] = "auto",
    quiet: Quiet = False,
) -> None:
    """Mine GPS positives by radius search and write them to DS/positives.csv."""
    from geobench.mining import MineOptions, mine_dataset

    if train_radius is not None and split != "train":
        warn(f"--train-radius {train_radius:g} is unused: training positives are mined for "
             f"--split train only (this is --split {split})")
    if radius == 0:
        warn("--radius 0 keeps only references at exactly the query's coordinates: almost "
             "every query loses its positives; the VG protocols use 25 m")
    train_radius = DEFAULT_TRAIN_RADIUS if train_radius is None else train_radius
    with claim_output(ds, "mine", option="DS"):
        report = mine_dataset(ds, MineOptions(split=split, radius=radius,
                                              train_radius=train_radius,
                                              negative_radius=negative_radius, metric=metric))
    rows = [[kind, n, report.n_queries, report.n_references] for kind, n in report.links.items()]
    print_table(f"mined {ds} split {split} ({report.metric}, <= {radius:g} m)",
                ["kind", "links", "queries", "references"], rows)
    none = report.no_positive
    if none:
        shown = ", ".join(none[:5]) + (", ..." if len(none) > 5 else "")
        typer.echo(f"{len(none)} of {report.n_queries} queries have no positive within "
                   f"{radius:g} m: {shown}")
