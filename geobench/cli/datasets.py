"""`geobench datasets | download | prepare | doctor`: the dataset catalog, getting a raw
copy, checking it and indexing it into a prepared dataset directory.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from geobench.cli.common import (
    SHARD_HELP,
    WORKERS_HELP,
    Quiet,
    command,
    difficulty_option,
    parse_size,
    print_table,
    shard_lock,
    warn,
)
from geobench.errors import UsageError
from geobench.guard import claim_output


def _has_adapter(name: str) -> str:
    import geobench.datasets  # noqa: F401  (importing registers the adapters)
    from geobench.datasets.registry import DATASETS

    return "yes" if name in DATASETS else "no"


@command("datasets", examples=[
    "geobench datasets",
    "geobench datasets vigor",
])
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


@command("download", examples=[
    "geobench download cvusa --from ~/Downloads/CVPR_subset.zip --root data",
    "geobench download https://example.org/a.zip --sha256 HEX --root data",
])
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


@command("prepare", examples=[
    "geobench prepare synthetic --out ds/synth --difficulty easy --pairs 500",
    "geobench prepare cvusa --root data/CVUSA --out ds/cvusa --polar",
])
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
    protocol: Annotated[Optional[str], typer.Option(help="vigor: same | cross; msls: msls_val_740 (the papers' "
                                            "740 val queries, default) | msls_val_all (every "
                                            "query in val/queries).")] = None,
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

    difficulty = difficulty_option(difficulty, preset, "standard")
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

        if root is not None:
            raise UsageError(f"--root {root} does not apply to `prepare synthetic`: the world "
                             f"is generated into {out / 'raw'}; drop --root")

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


@command("doctor", examples=["geobench doctor cvusa --root data/CVUSA --deep",
                             "geobench doctor vigor --root data/VIGOR --deep --shard auto --out chk",
                             "geobench doctor vigor --root data/VIGOR --deep --shard merge --out chk"])
def doctor_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    root: Annotated[Path, typer.Option(help="Raw dataset root.")],
    deep: Annotated[bool, typer.Option(help="Fully decode every image.")] = False,
    shard: Annotated[Optional[str], typer.Option(help=SHARD_HELP + " Needs --out.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="With --shard: where the shards keep "
                                                "what they found.")] = None,
    quiet: Quiet = False,
) -> None:
    """Check a local copy of a dataset before training on it."""
    from geobench.doctor import doctor
    from geobench.errors import DataError
    from geobench.shard import parse_shard

    part = parse_shard(shard)
    if (part is None) != (out is None):
        raise UsageError("--shard and --out go together: the shards of a doctor run keep what "
                         "they found in --out for --shard merge; pass both or neither")
    if part is None:
        report = doctor(name, root, deep=deep)
    else:
        with claim_output(out, "doctor", inputs={"--root": root}, **shard_lock(part)):
            report = doctor(name, root, deep=deep, shard=part, out=out)
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
