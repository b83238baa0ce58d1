"""The `geobench` command line: a thin Typer shell over the library.

Each command parses its options, calls one library function and prints the result
(tables on stdout, progress on stderr). Heavy libraries (torch, cv2, faiss, h5py,
matplotlib) are imported inside the commands so `geobench --help` stays instant.
User errors (GeobenchError) are printed on one line to stderr with a non-zero exit.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from geobench.errors import (
    GeobenchError,
    UsageError,
    interrupted_message,
    one_line,
    user_message,
)
from geobench.guard import claim_output
from geobench.progress import set_quiet

app = typer.Typer(
    name="geobench",
    help="Cross-view and visual geo-localization: datasets, preprocessing, training, "
    "evaluation and reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Silence progress bars.")]
OnBadImage = Annotated[str, typer.Option(
    help="An unreadable (missing, truncated, corrupt) image: fail (one error naming the file) "
         "| skip (leave it out; the count is printed, the list written to bad_images.txt).")]
# One meaning of --workers everywhere: N worker processes; 0 = none, the work runs in this
# process; left out = the command's default (stated in each help).
WORKERS_HELP = "Worker processes (0: none, work in this process)"


def _version(value: bool) -> None:
    if value:
        from geobench import __version__

        typer.echo(f"geobench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """Cross-view and visual geo-localization: datasets, preprocessing, training, evaluation
    and reports."""


def command(*args: Any, group: typer.Typer | None = None,
            **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command (on `app`, or on a sub-command `group`) whose GeobenchErrors
    become one-line messages and exit codes."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            set_quiet(bool(kw.get("quiet", False)))
            try:
                with one_line_warnings():
                    return func(*a, **kw)
            except GeobenchError as exc:
                typer.echo(f"error: {one_line(user_message(exc))}", err=True)
                raise typer.Exit(exc.exit_code) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                # a full disk met outside geobench's own writers (a library, a folder)
                typer.echo(f"error: {exc.filename or 'output'}: disk full ({exc.strerror}); "
                           f"free some space and re-run the same command", err=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                # Commands that know what they kept raise Interrupted (a GeobenchError)
                # with the exact story; this is the default for the others.
                typer.echo(f"error: {interrupted_message(func.__name__)}", err=True)
                raise typer.Exit(130) from None

        name = args[0] if args else func.__name__
        if group is None and name in EXAMPLES:
            # \b keeps click from re-wrapping the example lines into one paragraph.
            kwargs.setdefault("epilog", "\b\nExamples:\n" + "\n".join(
                f"  {line}" for line in EXAMPLES[name]))
        return (group or app).command(*args, **kwargs)(wrapper)

    return decorate


@contextlib.contextmanager
def one_line_warnings() -> Any:
    """Library GeobenchWarnings appear as one `warning: ...` line on stderr, once each."""
    import warnings

    from geobench.errors import GeobenchWarning

    shown = warnings.showwarning

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, GeobenchWarning):
            typer.echo(f"warning: {one_line(str(message))}", err=True)
        else:
            shown(message, category, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("default", GeobenchWarning)
        warnings.showwarning = show
        yield


EXAMPLES = {
    "datasets": ["geobench datasets", "geobench datasets vigor"],
    "download": ["geobench download cvusa --from ~/Downloads/CVPR_subset.zip --root data",
                 "geobench download https://example.org/a.zip --sha256 HEX --root data"],
    "prepare": ["geobench prepare synthetic --out ds/synth --difficulty easy --pairs 500",
                "geobench prepare cvusa --root data/CVUSA --out ds/cvusa --polar"],
    "polar": ["geobench polar data/CVUSA/bingmap/19 ds/polar --size 112x616 --workers 2"],
    "crop": ["geobench crop data/CVUSA/streetview/panos ds/fov90 --fov 90 --mode shift",
             "geobench crop ds/synth ds/synth-persp --fov 90 --mode perspective --size 224x224"],
    "mine": ["geobench mine ds/sfxl --split test --radius 25"],
    "models": ["geobench models", "geobench models safa"],
    "train": ["geobench train safa --preset tiny --data ds/synth --out runs/safa-tiny",
              "geobench train safa --data ds/synth --out runs/safa-tiny --resume"],
    "eval": ["geobench eval runs/safa-tiny --data ds/synth --split test",
             "geobench eval --features features.h5 --out results/mine --protocol cvusa"],
    "report": ["geobench report runs --table --paper cvusa",
               "geobench report runs --check baseline.csv --tolerance 1"],
    "bench": ["geobench bench --quick", "geobench bench eval --check bench/bench.csv"],
    "doctor": ["geobench doctor cvusa --root data/CVUSA --deep"],
    "demo": ["geobench demo", "geobench demo --model safa --difficulty standard --epochs 5"],
}


def out_console():
    from rich.console import Console

    # Piped output would otherwise wrap tables at 80 columns.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    out_console().print(table)


def parse_size(text: str, option: str) -> tuple[int, int]:
    """Parse 'HxW' into (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h <= 0 or w <= 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a size; write it as HEIGHTxWIDTH, "
                         f"e.g. 112x616") from None
    return h, w


def parse_percent(text: str, option: str) -> float:
    """A percentage, written '25' or '25%'; >= 0."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1] if raw.endswith("%") else raw)
        if not value >= 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a percentage >= 0; write e.g. 25 or "
                         f"25%") from None
    return value


# --------------------------------------------------------------------------- datasets


def _has_adapter(name: str) -> str:
    import geobench.datasets  # noqa: F401  (importing registers the adapters)
    from geobench.datasets.registry import DATASETS

    return "yes" if name in DATASETS else "no"


@command("datasets")
def datasets_cmd(
    name: Annotated[Optional[str], typer.Argument(help="Show one dataset's full card.")] = None,
    quiet: Quiet = False,
) -> None:
    """List the datasets geobench knows (datasets.yaml) with access and protocol."""
    from geobench.catalog import load_catalog

    catalog = load_catalog()
    if name is None:
        rows = [[s.name, s.task, s.default_protocol, s.access_kind, _has_adapter(s.name),
                 s.description] for s in catalog.values()]
        print_table("datasets", ["name", "task", "protocol", "access", "adapter", "description"],
                    rows)
        return
    spec = catalog.get(name)
    if spec is None:
        from geobench.catalog import unknown_dataset

        raise unknown_dataset(name, catalog)
    print_table(f"dataset {name}", ["field", "value"], [[k, v] for k, v in spec.card_rows()])


@command("download")
def download_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name from `geobench datasets`, or a URL.")],
    root: Annotated[Path, typer.Option(help="Folder to download and extract into.")] = Path("data"),
    mirror: Annotated[Optional[str], typer.Option(help="URL prefix replacing the origin.")] = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="A file or folder you already "
                                                  "have (for gated datasets).")] = None,
    sha256: Annotated[Optional[str], typer.Option(help="Expected sha256 (URL mode).")] = None,
    quiet: Quiet = False,
) -> None:
    """Download a dataset (or one URL) with resume, checksum and safe extraction."""
    from geobench.download import download_dataset, download_url

    if "://" in name:
        if from_ is not None or mirror is not None:
            raise UsageError("--from and --mirror apply to dataset names, not to a URL")
        with claim_output(root, "download", option="--root", lock_name=".geobench-url.lock"):
            result = download_url(name, root, sha256)
    else:
        if sha256 is not None:
            raise UsageError("--sha256 applies to a URL; dataset checksums come from "
                             "datasets.yaml")
        lock = f".geobench-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.lock"  # one per dataset
        with claim_output(root, "download", option="--root", lock_name=lock):
            result = download_dataset(name, root, mirror=mirror, from_path=from_)
    rows = [[f.name, f.action, f"{f.size:,}", f.sha256[:16], f.extracted] for f in result.files]
    print_table(f"{result.dataset} -> {result.root}", ["file", "action", "bytes", "sha256",
                                                       "extraction"], rows)
    if "://" not in name:
        typer.echo(f"next: geobench prepare {name} --root {result.root} --out DS")


@command("prepare")
def prepare_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name (see `geobench datasets`).")],
    out: Annotated[Path, typer.Option(help="Prepared dataset directory to write.")],
    root: Annotated[Optional[Path], typer.Option(help="Raw dataset root in its real layout.")] = None,
    polar: Annotated[bool, typer.Option(help="Also write polar-transformed aerial images.")] = False,
    polar_size: Annotated[str, typer.Option(help="Polar image size HxW.")] = "112x616",
    polar_stretch: Annotated[str, typer.Option(
        help="none | minmax: stretch each polar image to 0..255 as SAFA/DSM's published "
             "files are (for their released weights).")] = "none",
    strict: Annotated[bool, typer.Option(help="Fail on the first missing or damaged image "
                                         "(every image is fully decoded).")] = False,
    pairs: Annotated[Optional[int], typer.Option(help="synthetic: training pairs "
                                                 "[default 1000].")] = None,
    test_pairs: Annotated[Optional[int], typer.Option(help="synthetic: test pairs [default: "
                                                      "the preset's gallery size].")] = None,
    seed: Annotated[int, typer.Option(help="synthetic: world seed.")] = 0,
    layout: Annotated[str, typer.Option(help="synthetic: cvusa | vigor | vg.")] = "cvusa",
    cities: Annotated[Optional[int], typer.Option(help="synthetic: number of cities "
                                                  "[default 2].")] = None,
    difficulty: Annotated[Optional[str], typer.Option(
        help="synthetic: world difficulty easy | standard | hard [default standard].")] = None,
    preset: Annotated[Optional[str], typer.Option(
        hidden=True, help="Deprecated alias of --difficulty.")] = None,
    overwrite: Annotated[bool, typer.Option(help="synthetic: replace an existing generated "
                                            "world in OUT/raw.")] = False,
    resolution: Annotated[str, typer.Option(help="synthetic: default (half the real sizes) | "
                                            "full.")] = "default",
    workers: Annotated[Optional[int], typer.Option(help=f"synthetic: rendering {WORKERS_HELP}"
                                                   "; same output for any) [default: one per "
                                                   "core].")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="vigor: same | cross.")] = None,
    corrected: Annotated[bool, typer.Option(help="vigor: use splits__corrected labels.")] = False,
    queries_folder: Annotated[Optional[str], typer.Option(
        help="VG datasets: queries folder name (sf_xl default queries_v1).")] = None,
    drop_distractors: Annotated[bool, typer.Option(
        help="university1652: drop gallery buildings absent from the queries.")] = False,
    model: Annotated[Optional[str], typer.Option(help="Take the polar size from this model's "
                                                 "card.")] = None,
    quiet: Quiet = False,
) -> None:
    """Index a raw dataset (or generate the synthetic world) into DS/index.csv, positives.csv."""
    from geobench.datasets import prepare_dataset

    difficulty = _difficulty(difficulty, preset, "standard")
    if name != "synthetic":
        _unused_for(name, {"--pairs": pairs, "--test-pairs": test_pairs, "--cities": cities,
                           "--difficulty": difficulty != "standard" or None,
                           "--overwrite": overwrite or None, "--workers": workers})
    options: dict[str, Any] = {"strict": strict}
    if polar:
        from geobench.geometry.polar import STRETCH

        if polar_stretch not in STRETCH:
            raise UsageError(f"--polar-stretch {polar_stretch!r} is not one of "
                             f"{' | '.join(STRETCH)}")
        options.update(polar=True, polar_size=parse_size(polar_size, "--polar-size"), model=model)
        if polar_stretch != "none":
            options["polar_stretch"] = polar_stretch
    if name == "synthetic":
        from geobench.datasets.synthetic import SyntheticOptions, prepare_synthetic

        given = {"pairs": pairs, "test_pairs": test_pairs, "cities": cities}
        synth = SyntheticOptions(out=out / "raw", seed=seed, layout=layout, preset=difficulty,
                                 resolution=resolution, workers=workers, overwrite=overwrite,
                                 **{k: v for k, v in given.items() if v is not None})
        with claim_output(out, "prepare synthetic"):
            ds = prepare_synthetic(synth, out, options)
        _print_prepared(ds, f"prepared synthetic ({layout}, {difficulty}) -> {out}")
        return
    for key, value in (("protocol", protocol), ("queries_folder", queries_folder)):
        if value is not None:
            options[key] = value
    if corrected:
        options["corrected"] = True
    if drop_distractors:
        options["drop_distractors"] = True
    if root is None:
        raise UsageError(f"prepare {name}: --root is required; point it at your raw copy of "
                         f"{name} (see `geobench datasets {name}` for its layout)")
    with claim_output(out, f"prepare {name}", inputs={"--root": root}):
        ds = prepare_dataset(name, root, out, options)
    _print_prepared(ds, f"prepared {name} -> {out}")


def warn(message: str) -> None:
    typer.echo(f"warning: {one_line(message)}", err=True)


def _difficulty(difficulty: str | None, preset: str | None, default: str) -> str:
    """--difficulty, or its deprecated spelling --preset (which means model size in train)."""
    if preset is not None:
        if difficulty is not None and difficulty != preset:
            raise UsageError(f"--preset {preset} and --difficulty {difficulty} disagree; "
                             f"--preset is the deprecated name of --difficulty, pass only that")
        warn(f"--preset is deprecated here and will be removed in the next release: write "
             f"--difficulty {preset} (in `geobench train`, --preset is the model size)")
        return preset
    return difficulty or default


def _unused_for(name: str, given: dict[str, Any]) -> None:
    used = [opt for opt, value in given.items() if value is not None]
    if used:
        warn(f"{', '.join(used)} only appl{'ies' if len(used) == 1 else 'y'} to "
             f"`prepare synthetic`; ignored for {name}")


def _print_prepared(ds: Any, title: str) -> None:
    from geobench.prepared import counts

    rows = [[*key.split("/"), n] for key, n in counts(ds.index).items()]
    rows += [["positives", kind, "", n] for kind, n in ds.manifest["n_positives"].items()]
    rows += [["missing", view, "", n] for view, n in ds.manifest.get("missing_images", {}).items()]
    print_table(title, ["split", "role", "view", "count"], rows)


# --------------------------------------------------------------------------- geometry


@command("polar")
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
    quiet: Quiet = False,
) -> None:
    """Polar-transform aerial images so they line up with north-centred panoramas."""
    from geobench.geometry.polar import PolarParams, polar_folder

    params = PolarParams(size=parse_size(size, "--size"), north=north, radius=radius,
                         format=format, crop_square=crop_square, stretch=stretch)
    with claim_output(dst, "polar", inputs={"SRC": src if src.is_dir() else None}, option="DST"):
        report = polar_folder(src, dst, params, workers=workers, strict=strict)
    rate = report.written / report.seconds if report.seconds > 0 else 0.0
    print_table(f"polar {src} -> {dst}", ["images", "written", "skipped", "failed", "size",
                                          "north", "radius", "img/s"],
                [[report.total, report.written, report.skipped, len(report.failed), size,
                  north, radius, f"{rate:.1f}"]])
    for _path, reason in report.failed:
        typer.echo(f"failed: {one_line(reason)}", err=True)
    report.raise_for_failures()


@command("crop")
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
    quiet: Quiet = False,
) -> None:
    """Crop panoramas to a limited field of view (shifted strips or pinhole views)."""
    from geobench.geometry.crops import CropParams
    from geobench.geometry.cropset import crop_dataset, crop_folder

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
    with claim_output(dst, "crop", inputs={"SRC": src if src.is_dir() else None}, option="DST"):
        if (src / "manifest.json").is_file():
            report = crop_dataset(src, dst, params, split=split, references=references,
                                  workers=workers, strict=strict)
            where = f"{dst} (prepared dataset, crops in {dst / 'crops'})"
        else:
            report = crop_folder(src, dst, params, workers=workers, strict=strict)
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


@command("mine")
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
    train_radius = 10.0 if train_radius is None else train_radius
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


# --------------------------------------------------------------------------- models, train, eval


def _millions(value: float | None, digits: int) -> str:
    # A card registered outside the zoo (a plugin, a test) may not have counted them.
    return "?" if value is None else f"{value:.{digits}f}"


@command("models")
def models_cmd(
    name: Annotated[Optional[str], typer.Argument(help="Show one model's card.")] = None,
    quiet: Quiet = False,
) -> None:
    """List the registered models with their cards."""
    from geobench.models import describe, list_models

    def sizes(info: dict) -> str:
        return ", ".join(f"{v} {h}x{w}" for v, (h, w) in info["input_size"].items())

    if name is None:
        rows = []
        for key in list_models():
            info = describe(key)
            rows.append([key, f"{info['query_view']} -> {info['reference_view']}", sizes(info),
                         "yes" if info["polar"] else "no", info["descriptor_dim"],
                         _millions(info["params_m"], 2), info["recipe"].get("loss")])
        print_table("models (`geobench models NAME` shows a card)",
                    ["name", "query -> reference", "input size", "polar", "dim", "params (M)", "loss"],
                    rows)
        return
    info = describe(name)
    rows = [["paper", info["paper"]], ["description", info["description"]],
            ["query -> reference", f"{info['query_view']} -> {info['reference_view']}"],
            ["input size", sizes(info)], ["polar aerial", "yes" if info["polar"] else "no"],
            ["mean / std", f"{info['mean']} / {info['std']}"],
            ["descriptor size", info["descriptor_dim"]], ["parameters (M)", _millions(info["params_m"], 3)]]
    rows += [[f"recipe.{k}", v] for k, v in info["recipe"].items()]
    rows += _weights_rows(name)
    for preset, spec in info["presets"].items():
        rows.append([f"preset {preset}", ", ".join(f"{k}={v}" for k, v in spec.items() if k != "recipe")])
    rows += [[f"argument {k}", repr(v)] for k, v in info["arguments"].items()]
    rows.append(["notes", info["notes"]])
    print_table(f"model {name}", ["field", "value"], rows)


WEIGHTS_HELP = ("Local weights file: the whole model (a geobench run's checkpoint, or a released "
                "LRFR / Sample4Geo / MixVPR checkpoint) or a backbone (torchvision/timm names).")
PRETRAINED_HELP = ("Starting weights from the catalog: imagenet, none or an entry name "
                   "(`geobench models NAME` lists them) [paper recipe: imagenet; presets: none].")


def _weights_rows(name: str) -> list[list[Any]]:
    """Which catalog file the paper recipe starts from, and the others that fit the backbone."""
    from geobench.models.initial import recipe_weights
    from geobench.models.pretrained import backbone_family, load_weights_catalog

    backbone, entry = recipe_weights(name)
    if not backbone:
        return [["weights (paper recipe)", "no backbone argument: see the model's notes"]]
    start = (f"{entry.name}: {entry.url} ({entry.license}; --pretrained imagenet, the default)"
             if entry else f"none: no catalog entry for backbone {backbone}, so the paper recipe "
                           f"starts from random weights (pass --weights FILE)")
    others = [e.name for e in load_weights_catalog().values()
              if e.backbone == backbone_family(backbone) and (entry is None or e.name != entry.name)]
    rows = [["weights (paper recipe)", start]]
    if others:
        rows.append(["weights (also fit)", ", ".join(others) + " (--pretrained NAME)"])
    return rows


@command("train")
def train_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name (see `geobench models`).")],
    data: Annotated[Path, typer.Option(help="Prepared dataset directory.")],
    out: Annotated[Path, typer.Option(help="Run directory.")],
    config: Annotated[Optional[Path], typer.Option(help="YAML config overriding the card.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs [card recipe].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Pairs per batch [card recipe].")
                          ] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate [card recipe].")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")
                         ] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu | cuda.")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision "
                                                "(CUDA only).")] = None,
    workers: Annotated[Optional[int], typer.Option(help=f"Data-loading {WORKERS_HELP}) "
                                                   "[card recipe, else 2].")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of weights, sampling and "
                                                "augmentation.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from RUN/checkpoint.pt.")] = False,
    weights: Annotated[Optional[Path], typer.Option(help=WEIGHTS_HELP)] = None,
    pretrained: Annotated[Optional[str], typer.Option(help=PRETRAINED_HELP)] = None,
    preset: Annotated[Optional[str], typer.Option(help="Model preset, e.g. tiny.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Evaluate every N epochs.")] = None,
    eval_test: Annotated[Optional[bool], typer.Option(
        "--eval-test/--no-eval-test", help="Also report test metrics at each evaluation "
        "(logged as test_*; they never select best.pt).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(
        help="Share of the train places carved as the validation split that selects best.pt "
             "when the dataset has no val split [default 0.1; 0: none].")] = None,
    val_seed: Annotated[Optional[int], typer.Option(help="Seed of that carve [default 0].")
                        ] = None,
    tensorboard: Annotated[bool, typer.Option(
        help="Also log to RUN/tensorboard/ (needs pip install 'geobench-cvgl[tb]').")] = False,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE", help="KEY=VALUE config override, repeatable; KEY is a dotted path, VALUE YAML, "
        "e.g. --set model_args.attention=cbam --set loss_args.gamma=5.")] = None,
    on_bad_image: Annotated[Optional[str], typer.Option(
        help="An unreadable (missing, truncated, corrupt) image: fail (one error naming the "
             "file) | skip (replace its pair; the count is printed, the list written to "
             "RUN/bad_images.txt) [fail].")] = None,
    quiet: Quiet = False,
) -> None:
    """Train a registered model on a prepared dataset."""
    from geobench.train.cli_glue import run_train, summary_rows

    with claim_output(out, "train", inputs={"--data": data}):
        summary = run_train(
            model, data, out, config=config, resume=resume, preset=preset, cli=dict(
                epochs=epochs, batch_size=batch_size, lr=lr, max_steps=max_steps, device=device,
                amp=amp, workers=workers, seed=seed, weights=str(weights) if weights else None,
                pretrained=pretrained, eval_every=eval_every, tensorboard=tensorboard or None,
                eval_test=eval_test, val_fraction=val_fraction, val_seed=val_seed,
                on_bad_image=on_bad_image),
            sets=set_, warn=lambda line: typer.echo(f"warning: {one_line(line)}", err=True))
    if summary is None:  # a non-zero rank of a torchrun job: rank 0 reports
        return
    rows = [[k, v] for k, v in summary_rows(summary)]
    print_table(f"trained {model} -> {out}", ["", "value"], rows)
    if summary.skipped_images:
        warn(f"skipped {len(summary.skipped_images)} unreadable image(s) (--on-bad-image "
             f"skip); they are listed in {Path(out) / 'bad_images.txt'}")


@command("eval")
def eval_cmd(
    run: Annotated[Optional[Path], typer.Argument(help="Run directory of a trained model.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Prepared dataset (RUN mode).")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate (RUN mode).")] = "test",
    features: Annotated[Optional[Path], typer.Option(help="Features HDF5 of any model.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output directory.")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="Named protocol.")] = None,
    k: Annotated[str, typer.Option("--k", help="Recall cut-offs, comma separated.")] = "1,5,10",
    memory: Annotated[str, typer.Option(help="Memory budget for the search, e.g. 2GB.")] = "2GB",
    save_topk: Annotated[int, typer.Option(help="Top-K neighbours to store.")] = 100,
    normalise: Annotated[bool, typer.Option(
        help="L2-normalise unnormalised descriptors (with a warning) instead of refusing.")] = False,
    save_descriptors: Annotated[bool, typer.Option(
        help="Also store the descriptors in results.h5.")] = False,
    search: Annotated[str, typer.Option(
        help="exact, or faiss:FACTORY for an approximate index (e.g. faiss:IVF4096,Flat, "
             "faiss:HNSW32); approximate results are marked as such.")] = "exact",
    nprobe: Annotated[Optional[int], typer.Option(help="faiss IVF cells to visit.")] = None,
    ef_search: Annotated[Optional[int], typer.Option(help="faiss HNSW efSearch.")] = None,
    features_dtype: Annotated[str, typer.Option(
        help="RUN mode: store descriptors in features.h5 as float32 or float16 (half the "
             "file).")] = "float32",
    exact_sample: Annotated[int, typer.Option(
        help="With faiss: also search this many queries exactly and report the R@1 lost.")
                            ] = 1000,
    ties: Annotated[str, typer.Option(
        help="Tied scores: expected (the mean over all orderings, McSherry & Najork 2008), "
             "optimistic or pessimistic.")] = "expected",
    rerank: Annotated[Optional[int], typer.Option(
        help="Re-order each query's global top K by the model's pair score (pair-dependent "
             "models: asavg); ranks beyond K stay those of the global search. 0: off. "
             "[default: the model card's, asavg 50]")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Evaluate this registered model as loaded from --weights/--pretrained (no RUN).")
    ] = None,
    weights: Annotated[Optional[Path], typer.Option(help=WEIGHTS_HELP)] = None,
    pretrained: Annotated[Optional[str], typer.Option(help="With --model: imagenet or a "
                                                      "weights-catalog entry name.")] = None,
    preset: Annotated[Optional[str], typer.Option(help="With --model: model preset.")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(
        help="RUN mode: best, last or a checkpoint file [default: best when the run has one].")
    ] = None,
    device: Annotated[Optional[str], typer.Option(
        help="cpu | cuda for embedding and search [default: cuda when available].")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per embedding batch.")] = 32,
    workers: Annotated[int, typer.Option(help=f"Image-loading {WORKERS_HELP}).")] = 2,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed-precision "
                                                "embedding [default: on with CUDA].")] = None,
    on_bad_image: OnBadImage = "fail",
    quiet: Quiet = False,
) -> None:
    """Evaluate a run on a prepared split, or a features file, under a named protocol."""
    from dataclasses import replace

    from geobench.eval.approx import parse_search
    from geobench.eval.evaluate import EvalOptions, evaluate_features, parse_ks, parse_memory
    from geobench.eval.ties import check_policy

    if parse_memory(memory) < SMALL_MEMORY:
        warn(f"--memory {memory} is tiny: the search then runs in very small blocks and can "
             f"be tens of times slower; the default 2GB is right for most machines")

    parse_search(search)  # a bad --search fails before any work
    approx = dict(search=search, nprobe=nprobe, ef_search=ef_search, exact_sample=exact_sample,
                  rerank=rerank)
    check_policy(ties)
    from geobench.train.runeval import resolve_device

    device = resolve_device(device)
    if device == "cpu":  # the search stays on the CPU too (numpy engine)
        approx["backend"] = "numpy"
    else:
        approx["device"] = device
    embed = dict(batch_size=batch_size, device=device, workers=workers)
    if model is not None or weights is not None or pretrained is not None:
        if model is None or run is not None or features is not None or data is None or out is None:
            raise UsageError("--weights/--pretrained evaluate a model without a run: pass "
                             "--model NAME --data DS --out DIR (and no RUN or --features)")
        from geobench.train.runeval import evaluate_weights

        with claim_output(out, "eval", inputs={"--data": data}):
            summary = evaluate_weights(model, data, out, split, EvalOptions(
                protocol=protocol, ks=parse_ks(k), memory_bytes=parse_memory(memory),
                save_topk=save_topk, save_descriptors=save_descriptors, ties=ties, **approx),
                weights=weights, pretrained=pretrained, preset=preset, **embed)
        for note in summary.notes:
            typer.echo(f"warning: {one_line(note)}", err=True)
        _print_eval(summary)
        return
    if features is None:
        if run is None:
            raise UsageError("nothing to evaluate: pass --features F.h5 --out DIR, or a run "
                             "directory RUN --data DS")
        if data is None:
            raise UsageError(f"--data DS is required to evaluate the run {run}: the prepared "
                             f"dataset whose --split {split} is embedded")
        from geobench.train.runeval import check_run_dir, default_eval_dir, evaluate_run

        check_run_dir(run)
        options = EvalOptions(protocol=protocol, ks=parse_ks(k), memory_bytes=parse_memory(memory),
                              save_topk=save_topk, save_descriptors=save_descriptors, ties=ties,
                              **approx)
        out_dir = out if out is not None else default_eval_dir(run, data, split)
        # Under torchrun every rank embeds a shard; rank 0 owns the output folder.
        main_rank = int(os.environ.get("RANK", "0") or 0) == 0
        claim = (claim_output(out_dir, "eval", inputs={"--data": data}) if main_rank
                 else contextlib.nullcontext())
        with claim:
            summary = evaluate_run(run, data, split, options, out=out_dir, checkpoint=checkpoint,
                                   amp=amp, features_dtype=features_dtype,
                                   on_bad_image=on_bad_image, **embed)
        if summary is None:  # a non-zero rank of a torchrun job: rank 0 reports
            return
        for note in summary.notes:
            typer.echo(f"warning: {one_line(note)}", err=True)
        _print_eval(summary)
        return
    if run is not None:
        raise UsageError(f"pass either a run directory ({run}) or --features, not both")
    if on_bad_image != "fail":
        warn("--on-bad-image applies to a run directory (images are embedded); a features "
             "file has no images")
    if out is None:
        raise UsageError(f"--out DIR is required with --features {features}: results.h5 and "
                         f"metrics.csv are written there")
    options = EvalOptions(protocol=protocol, ks=parse_ks(k), memory_bytes=parse_memory(memory),
                          save_topk=save_topk, normalise=normalise,
                          save_descriptors=save_descriptors, ties=ties)
    with claim_output(out, "eval"):
        summary = evaluate_features(features, out, replace(options, **approx))
    for note in summary.notes:
        typer.echo(f"warning: {one_line(note)}", err=True)
    _print_eval(summary)


SMALL_MEMORY = 16 << 20  # below this the search blocks are too small to be efficient


def _print_eval(summary: Any) -> None:
    """The metrics row as a table on stdout; where the files went on stderr."""
    from geobench.eval.results import read_metrics
    from geobench.report.table import render

    typer.echo(render(read_metrics(summary.metrics_path), "rich"), nl=False)
    typer.echo(f"wrote {summary.results_path} and {summary.metrics_path}", err=True)


@command("report")
def report_cmd(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Runs or folders.")] = None,
    table: Annotated[bool, typer.Option(help="Print the table.")] = False,
    format: Annotated[str, typer.Option("--format", help="rich | md | csv | latex.")] = "rich",
    sort: Annotated[Optional[str], typer.Option(help="Column to sort by.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write recall@K curves to this PNG.")] = None,
    chance: Annotated[bool, typer.Option(help="With --plot: add the recall of a random "
                                         "ranking.")] = False,
    paper: Annotated[Optional[str], typer.Option(help="Add published rows for a dataset.")] = None,
    check: Annotated[Optional[Path], typer.Option(
        metavar="CSV|paper:METHOD[@PROTOCOL]",
        help="Baseline metrics CSV to compare, or paper:METHOD[@PROTOCOL] to gate the runs "
        "against a published row (data/paper_results.csv).")] = None,
    tolerance: Annotated[str, typer.Option(
        help="Allowed drop, in percent points of each metric (recall is a percentage: 1 = one "
             "point of R@1); a trailing % is accepted.")] = "1",
    ablation: Annotated[bool, typer.Option(
        help="Pivot the runs into an ablation table: rows = variants, columns = R@1/R@5/R@10/R@1% "
        "per dataset (--format md | latex | csv).")] = False,
    html: Annotated[Optional[Path], typer.Option(
        help="Write a self-contained HTML report (table, curves, examples, provenance).")] = None,
    quiet: Quiet = False,
) -> None:
    """Collect metrics.csv files into tables and curves; check against a baseline."""
    import pandas as pd

    from geobench.report.table import (
        FORMATS,
        check_table,
        collect,
        paper_rows,
        plot_curves,
        render,
        sort_rows,
    )

    if format not in FORMATS:
        raise UsageError(f"--format {format!r}: use one of {', '.join(FORMATS)}")
    if plot is not None:
        from geobench.report.plot import check_output

        check_output(plot)  # a bad --plot fails before anything is read
    rows = collect(paths or [Path(".")])
    if paper:
        rows = pd.concat([rows, paper_rows(paper)], ignore_index=True, sort=False)
    rows = sort_rows(rows, sort)
    if ablation:
        from geobench.report.ablation import ablation_table, render_ablation

        typer.echo(render_ablation(ablation_table(rows), format), nl=False)
    elif table or (plot is None and check is None and html is None):
        typer.echo(render(rows, format), nl=False)
    if plot is not None:
        typer.echo(f"wrote {plot_curves(rows, plot, chance=chance)}", err=True)
    if html is not None:
        from geobench.report.html import write_html

        typer.echo(f"wrote {write_html(rows, html)}", err=True)
    if check is not None:
        from geobench.report.published import check_published, is_published_spec

        tolerance = parse_percent(tolerance, "--tolerance")
        result = (check_published(rows, str(check), tolerance) if is_published_spec(check)
                  else check_table(rows, check, tolerance))
        typer.echo("\n".join(result.lines))
        if not result.ok:
            typer.echo(f"error: {result.failures} metric(s) dropped by more than {tolerance:g} "
                       f"points against {check} (or rows are missing); see the FAIL lines", err=True)
            raise typer.Exit(1)


# --------------------------------------------------------------------------- tooling


@command("bench")
def bench_cmd(
    stage: Annotated[str, typer.Argument(help="prep | mine | eval | models | train | "
                                         "synthetic | all, or a comma list.")] = "all",
    quick: Annotated[bool, typer.Option(help="Small sizes (a couple of minutes).")] = False,
    out: Annotated[Path, typer.Option(help="Where bench.csv and bench.h5 go.")] = Path("bench"),
    check: Annotated[Optional[Path], typer.Option(help="Baseline bench.csv: exit non-zero on a "
                                                  "ratio regression.")] = None,
    tolerance: Annotated[Optional[str], typer.Option(
        help="Gate factor, in percent of the baseline: a row fails only when worse by more "
             "than this (25 = 25%; a trailing % is accepted) AND beyond its measured noise [default: the "
             "baseline's per-row tolerance, else 25].")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Threads for floor and measurement "
                                                   "(default: all CPUs).")] = None,
    rows: Annotated[Optional[str], typer.Option(
        help="Regular expression: measure (and check) only the cases it matches, e.g. "
             "'deform_conv2d'.")] = None,
    quiet: Quiet = False,
) -> None:
    """Measure each stage against its floor on this machine and report ratios."""
    import re

    from geobench.bench.check import check_rows, confirm, read_baseline, rows_pattern
    from geobench.bench.collect import BenchOptions, collect, resolve_stages
    from geobench.bench.output import bench_table, check_table, console, write_bench

    stages = resolve_stages(stage)
    if tolerance is not None:
        percent = parse_percent(tolerance, "--tolerance")
        if not tolerance.strip().endswith("%") and 0 < percent < 1:
            warn(f"--tolerance {tolerance} is read as {tolerance}% (the unit is percent); "
                 f"for a fraction of {tolerance} write {percent * 100:g}")
        tolerance = percent / 100.0  # the checker's fraction
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads} must be at least 1")
    if rows is not None:
        try:
            re.compile(rows)
        except re.error as exc:
            raise UsageError(f"--rows {rows!r} is not a regular expression ({exc})") from None
    baseline = read_baseline(check) if check is not None else None  # fail before measuring
    options = BenchOptions(stages=stages, quick=quick, threads=threads, quiet=quiet, rows=rows)
    run = collect(options)
    checked = (check_rows(run.rows, baseline, tolerance, baseline_path=str(check), rows=rows)
               if baseline is not None else None)
    if checked is not None and checked.suspects:
        # A suspected regression is measured again, alone, in a fresh process: a run that
        # happened to land on a busy minute must not fail the job on its own.
        suspects = checked.suspects
        if not quiet:
            typer.echo(f"bench: {len(suspects)} suspected regression(s); measuring them again",
                       err=True)
        pattern = rows_pattern(suspects)
        again = collect(BenchOptions(stages=tuple(s for s in stages
                                                  if s in {x.stage for x in suspects}),
                                     quick=quick, threads=threads, quiet=quiet, rows=pattern))
        checked = confirm(checked, check_rows(again.rows, baseline, tolerance,
                                              baseline_path=str(check), rows=pattern))
    paths = write_bench(run, out, checked)
    show = console().print
    show(bench_table(run.rows, title=f"geobench bench {stage}{' --quick' if quick else ''}"))
    counts = {s: sum(r.status == s for r in run.rows) for s in ("pass", "miss", "info", "error")}
    show(", ".join(f"{n} {s}" for s, n in counts.items())
         + f"; wrote {', '.join(str(p) for p in paths)}")
    load = max(run.meta["loadavg_start"], run.meta["loadavg_end"])
    if load > run.meta["cpu_count"]:
        hint = ("; with more than one thread small operations can slow down many times over, "
                "`--threads 1` is the steadiest on a shared machine"
                if run.meta["threads"] > 1 else "")
        typer.echo(f"warning: the machine was busy (load average {load:g} on "
                   f"{run.meta['cpu_count']} CPUs); ratios are noisier than usual{hint}", err=True)
    problems = [f"stage {r.stage}: {r.error}" for r in run.errors]
    if checked is not None:
        verdicts = [line.verdict for line in checked.lines]
        if any(v not in ("ok", "skipped") for v in verdicts):
            show(check_table(checked))
        show(f"regression check against {check}: " + ", ".join(
            f"{verdicts.count(v)} {v}" for v in ("ok", "improved", "noisy", "new", "skipped",
                                                 "unconfirmed", "regression", "missing")
            if v in verdicts))
        problems += [f"{line.describe()} (baseline {check})" for line in checked.failed]
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)


@command("doctor")
def doctor_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    root: Annotated[Path, typer.Option(help="Raw dataset root.")],
    deep: Annotated[bool, typer.Option(help="Fully decode every image.")] = False,
    quiet: Quiet = False,
) -> None:
    """Check a local copy of a dataset before training on it."""
    from geobench.doctor import doctor
    from geobench.errors import DataError

    report = doctor(name, root, deep=deep)
    print_table(f"doctor {name} {root}", ["check", "status", "detail", "fix"],
                [[c.name, c.status.upper(), c.detail, c.fix] for c in report.checks])
    if report.usable:
        typer.echo(f"{name} at {root}: usable")
        return
    failed = [c for c in report.checks if c.status == "fail"]
    # Like every command: the error on stderr, exit code 2 (a DataError).
    raise DataError(f"{name} at {root} is NOT usable: {failed[0].detail}; {failed[0].fix}"
                    + (f" ({len(failed) - 1} more FAIL rows in the table)" if len(failed) > 1
                       else ""))


@command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Demo output directory.")] = Path("geobench-demo"),
    model: Annotated[str, typer.Option(help="Registered cross-view model (its tiny preset).")
                     ] = "safa",
    difficulty: Annotated[Optional[str], typer.Option(
        help="Synthetic world difficulty: easy | standard | hard [default easy].")] = None,
    preset: Annotated[Optional[str], typer.Option(
        hidden=True, help="Deprecated alias of --difficulty.")] = None,
    pairs: Annotated[int, typer.Option(help="Training pairs.")] = 600,
    test_pairs: Annotated[int, typer.Option(help="Test pairs (gallery size).")] = 200,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the world and the training.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Synthetic world → train a tiny model → evaluate → recall table and curve."""
    from geobench.demo import DemoOptions, run_demo

    preset = _difficulty(difficulty, preset, "easy")
    options = DemoOptions(out=out, model=model, preset=preset, pairs=pairs,
                          test_pairs=test_pairs, epochs=epochs, seed=seed)
    with claim_output(out, "demo"):  # run_demo checks every option before building anything
        summary = run_demo(options)
    rows = [[r["model"], *(f"{r[k]:.2f}" for k in ("r@1", "r@5", "r@10", "r@1%"))]
            for r in summary.rows]
    print_table(f"synthetic world, test split ({test_pairs} queries)",
                ["", "R@1", "R@5", "R@10", "R@1%"], rows)
    typer.echo(f"recall@K curve: {summary.curve_png}")
    typer.echo(f"retrieval examples: {summary.examples_png}")
    typer.echo(f"HTML report: {summary.report_html}")
    typer.echo(f"results: {summary.metrics_csv}")
    typer.echo("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary.stage_seconds.items())
               + f"; total {summary.seconds:.0f} s")


from geobench.viz import cli as _viz_cli  # noqa: E402,F401  (registers `geobench viz`)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
