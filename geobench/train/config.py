"""The resolved training configuration: model card recipe < YAML config < CLI options.

`resolve_config` merges the layers, validates every value and remembers which layer set
each key (`sources`), so RUN/config.json says exactly where a number came from.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geobench.errors import DataError, UsageError

OPTIMIZERS = ("adam", "adam_tf", "adamw", "sgd")  # adam_tf: TensorFlow's epsilon (train/tfadam.py)
SCHEDULES = ("constant", "staged", "cosine", "linear")
WARMUPS = ("zero", "step")  # first warm-up step at lr 0 (transformers) or at lr / warmup (MixVPR)
SAMPLING = ("unique", "gps", "gps_similarity")
MINERS = ("multi_similarity",)
# Losses that take place labels (several images of one place in a batch are positives).
LABEL_LOSSES = ("multi_similarity",)
# Recipe keys that document a recipe rather than set an option.
_DOC_KEYS = ("provenance", "notes")
CLIP_MODES = ("value", "norm")
CONFIG_FILE = "config.json"

# Names the model cards and papers use for the same thing.
_KEY_ALIASES = {"optimiser": "optimizer", "batch": "batch_size", "wd": "weight_decay",
                "warmup": "warmup_epochs", "clip": "grad_clip", "grad_clip_value": "grad_clip",
                "scheduler": "schedule"}
_SCHEDULE_ALIASES = {"multistep": "staged", "step": "staged", "steps": "staged", "none": "constant",
                     "cos": "cosine", "cosine_warmup": "cosine", "poly": "linear"}
_SCHEDULE_KEYS = {"milestones": "milestones", "gamma": "lr_gamma", "stretch": "schedule_stretch",
                  "warmup_epochs": "warmup_epochs", "warmup_steps": "warmup_steps",
                  "warmup_from": "warmup_from"}
_SAMPLING_ALIASES = {"random": "unique", "gps+similarity": "gps_similarity", "similarity": "gps_similarity",
                     "gps+sim": "gps_similarity"}
_LOSS_ALIASES = {"wsmt": "soft_margin_triplet", "weighted_soft_margin_triplet": "soft_margin_triplet",
                 "soft_triplet": "soft_margin_triplet", "triplet": "soft_margin_triplet",
                 "semi_hard": "semi_soft_tri_hard", "semisofttrihard": "semi_soft_tri_hard",
                 "info_nce": "infonce", "symmetric_infonce": "infonce"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (written to RUN/config.json)."""

    model: str
    data: str
    out: str
    preset: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    pretrained: str | None = None  # imagenet | none | a weights-catalog entry (models/pretrained.py)
    allow_unpinned: bool = False   # fetch a catalog entry without a published sha256
    loss: str = "soft_margin_triplet"
    loss_args: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    warmup_from: str = "zero"  # zero: lr 0 at the first step (transformers); step: 1/warmup (MixVPR)
    milestones: tuple[float, ...] = ()
    lr_gamma: float = 0.1
    schedule_stretch: float = 1.0
    epochs: int = 10
    batch_size: int = 8
    max_steps: int | None = None
    grad_clip: float | None = None
    grad_clip_mode: str = "value"
    amp: bool = False
    device: str = "auto"
    workers: int = 2
    seed: int = 1
    train_split: str = "train"
    eval_split: str | None = None  # selects best.pt; default val (the dataset's or carved)
    eval_every: int = 1
    eval_test: bool = False        # also report test metrics (logged as test_*), never selects
    val_fraction: float = 0.1      # share of train places carved as val when the data has none
    val_seed: int = 0              # seed of that carve
    eval_protocol: str | None = None
    eval_batch_size: int = 32
    sampling: str = "unique"
    # The loss receives the model's (B, B) pair scores (model.similarity_matrix) instead of
    # two descriptor batches: ASA-VG aligns every panorama to every query of the batch.
    pairwise_training: bool = False
    gps_neighbours: int = 0
    similarity_every: int = 1   # gps_similarity: epochs between refreshes of the similarity table
    similarity_range: int = 0   # gps_similarity: hardest candidates per anchor (0: 2 x neighbours)
    images_per_place: int = 1   # >1: batches of places x images (MixVPR), label-aware losses only;
    #                             images, two per pair, so batch_size / (images_per_place / 2) places
    places: str = "auto"        # training places: auto | item | netvlad | utm_cell | pair (places.py)
    place_cell_m: float = 10.0  # utm_cell: the side of a place's UTM square in metres
    miner: str | None = None
    miner_args: dict[str, Any] = field(default_factory=dict)
    hflip_p: float = 0.5
    rotate_p: float = 0.0
    augment: dict[str, Any] = field(default_factory=dict)  # photometric keys, augment_options.py
    checkpoint_every: int = 0
    tensorboard: bool = False
    on_bad_image: str = "fail"
    resume: bool = False
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_REQUIRED = ("model", "data", "out")
_SETTABLE = tuple(n for n in FIELDS if n not in ("sources",))


def _closest(key: str) -> str:
    close = difflib.get_close_matches(key, _SETTABLE, n=2, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _normalise(layer: Mapping[str, Any], where: str, strict: bool) -> tuple[dict[str, Any], list[str]]:
    """Map aliases to field names; unknown keys raise (strict) or are returned as ignored."""
    out: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in layer.items():
        name = _KEY_ALIASES.get(str(key).lower(), str(key))
        if name in _DOC_KEYS:
            continue
        if name == "miner" and isinstance(value, Mapping):
            value = dict(value)
            if "name" not in value:
                raise UsageError(f"{where}: miner is a mapping without 'name'; write e.g. "
                                 f"miner: {{name: multi_similarity, epsilon: 0.1}}")
            out.setdefault("miner_args", {}).update({k: v for k, v in value.items() if k != "name"})
            value = value["name"]
        if name == "loss" and isinstance(value, Mapping):
            value = dict(value)
            if "name" not in value:
                raise UsageError(f"{where}: loss is a mapping without 'name'; write e.g. "
                                 f"loss: {{name: infonce, label_smoothing: 0.1}}")
            loss_args = {k: v for k, v in value.items() if k != "name"}
            out.setdefault("loss_args", {}).update(loss_args)
            value = value["name"]
        if name == "schedule" and isinstance(value, Mapping):
            value = dict(value)
            for key2, field_name in _SCHEDULE_KEYS.items():
                if key2 in value:
                    out[field_name] = value.pop(key2)
            extra = [k for k in value if k != "name"]
            if extra:
                if strict:
                    raise UsageError(f"{where}: unknown schedule option(s) {', '.join(extra)}; use "
                                     f"name, {', '.join(_SCHEDULE_KEYS)}")
                ignored.extend(f"schedule.{k}" for k in extra)
            if "name" not in value:  # only options (e.g. --set schedule.milestones=[5]): keep the schedule
                continue
            value = value["name"]
        if name not in _SETTABLE or name in ("sources",):
            if strict:
                raise UsageError(f"{where}: unknown training option {key!r}{_closest(name)}; the "
                                 f"options are listed in geobench/train/config.py (TrainConfig)")
            ignored.append(str(key))
            continue
        out[name] = value
    if isinstance(out.get("loss"), str):
        out["loss"] = _LOSS_ALIASES.get(out["loss"].lower(), out["loss"])
    if isinstance(out.get("schedule"), str):
        out["schedule"] = _SCHEDULE_ALIASES.get(out["schedule"].lower(), out["schedule"].lower())
    if isinstance(out.get("sampling"), str):
        sampling = out["sampling"].lower()
        out["sampling"] = _SAMPLING_ALIASES.get(sampling, sampling)
    if isinstance(out.get("miner"), str) and out["miner"].lower() in ("none", ""):
        out["miner"] = None
    return out, ignored


def card_recipe(model: str, preset: str | None) -> dict[str, Any]:
    """The model card's recipe with the preset's recipe overrides applied."""
    from geobench.train.cards import resolve_card

    return dict(resolve_card(model, preset).recipe)


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: config file not found; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)}); fix "
                         f"the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a training config must be a mapping of option: value, got "
                         f"{type(data).__name__}")
    return data


def _coerce(name: str, value: Any, where: str) -> Any:
    spec = FIELDS[name]
    default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()  # type: ignore[misc]
    kind = spec.type
    if value is None:
        return None
    try:
        if name == "milestones":
            return tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
        if name == "augment" and str(value).lower() in ("none", "off"):
            from geobench.train.augment_options import switched_off

            return switched_off()  # merged over the card's keys: every one off
        if name in ("model_args", "loss_args", "miner_args", "augment"):
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if "bool" in str(kind):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "yes", "1")
            return bool(value)
        if "int" in str(kind) and "float" not in str(kind):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if "float" in str(kind):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: {name} = {value!r} is not a valid {kind} (default "
                         f"{default!r})") from None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Range checks with one-line messages naming the option and where it was set."""
    def bad(name: str, why: str) -> UsageError:
        return UsageError(f"training option {name} = {getattr(cfg, name)!r} (from "
                          f"{cfg.sources.get(name, 'defaults')}) {why}")

    for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                          ("sampling", SAMPLING), ("grad_clip_mode", CLIP_MODES),
                          ("warmup_from", WARMUPS)):
        if getattr(cfg, name) not in allowed:
            raise bad(name, f"is not one of {' | '.join(allowed)}")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise bad("device", "is not cpu, cuda or auto")
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(cfg, name) < 1:
            raise bad(name, "must be >= 1")
    if cfg.batch_size < 2:
        raise bad("batch_size", "must be >= 2: the losses use the other pairs of the batch as negatives")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise bad("max_steps", "must be >= 1")
    if not cfg.lr > 0:
        raise bad("lr", "must be > 0")
    for name in ("workers", "eval_every", "checkpoint_every", "gps_neighbours", "warmup_epochs",
                 "warmup_steps", "similarity_every", "similarity_range"):
        if getattr(cfg, name) < 0:
            raise bad(name, "must be >= 0")
    for name in ("hflip_p", "rotate_p"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise bad(name, "must be a probability in [0, 1]")
    from geobench.train.augment_options import resolve_augment
    from geobench.train.places import DEFINITIONS

    resolve_augment(cfg.augment, f"training option augment (from {cfg.sources.get('augment', 'defaults')})")

    if cfg.places not in DEFINITIONS:
        raise bad("places", f"is not one of {' | '.join(DEFINITIONS)}")
    if not cfg.place_cell_m > 0:
        raise bad("place_cell_m", "must be > 0 metres")
    if cfg.on_bad_image not in ("fail", "skip"):
        raise bad("on_bad_image", "is not one of fail | skip")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise bad("grad_clip", "must be > 0 (leave it out to disable clipping)")
    if cfg.schedule_stretch < 1:
        raise bad("schedule_stretch", "must be >= 1")
    if not 0 <= cfg.val_fraction < 1:
        raise bad("val_fraction", "must be a share in [0, 1) of the train places (0: no carve)")
    if cfg.eval_split == "test":
        raise bad("eval_split", "is test: best.pt is never selected on the test split; leave "
                  "eval_split unset (val, or one carved from train) and use eval_test to also "
                  "report test metrics")
    _validate_batches(cfg, bad)
    from geobench.losses import LOSSES

    LOSSES.entry(cfg.loss)  # unknown loss -> close matches
    _validate_model_args(cfg)
    return cfg


def _validate_model_args(cfg: TrainConfig) -> None:
    """model_args against the model card's schema, before any data is read."""
    from geobench.models import MODELS, _load_zoo
    from geobench.models.schema import check_model_args

    _load_zoo()
    if cfg.model in MODELS:  # an unknown model fails later with the close matches
        source = cfg.sources.get("model_args", "defaults")
        check_model_args(cfg.model, MODELS.card(cfg.model).schema, cfg.model_args,
                         where="--set" if source == "cli" else source)


def _validate_batches(cfg: TrainConfig, bad: Any) -> None:
    """Miner and places x images batches need a loss that uses them (no silent drop)."""
    if cfg.images_per_place < 1:
        raise bad("images_per_place", "must be >= 1")
    if cfg.images_per_place > 1 and cfg.loss not in LABEL_LOSSES:
        raise bad("images_per_place", f"needs a loss that takes place labels ({', '.join(LABEL_LOSSES)}), "
                  f"not {cfg.loss}; set images_per_place: 1 or loss: multi_similarity")
    if cfg.images_per_place > 1 and cfg.sampling != "unique":
        raise bad("images_per_place", f"builds its own places x images batches; drop sampling: "
                  f"{cfg.sampling} or set images_per_place: 1")
    if cfg.images_per_place > 1 and cfg.images_per_place % 2:
        raise bad("images_per_place", "must be even: a place's images come as (query, reference) "
                  "pairs, two images each")
    pairs_per_place = max(1, cfg.images_per_place // 2)
    if cfg.batch_size % pairs_per_place:
        raise bad("batch_size", f"must be a multiple of images_per_place / 2 ({pairs_per_place}): "
                  f"a batch of batch_size pairs is places x images_per_place images")
    if cfg.miner is not None:
        if cfg.miner not in MINERS:
            raise bad("miner", f"is not one of {' | '.join(MINERS)} (or none)")
        if cfg.loss != "multi_similarity":
            raise bad("miner", f"mines pairs for loss multi_similarity, not {cfg.loss}; drop the miner "
                      f"(miner: none) or use loss: multi_similarity")
        unknown = sorted(set(cfg.miner_args) - {"epsilon"})
        if unknown:
            raise bad("miner", f"has no option {', '.join(unknown)} (its option: epsilon)")


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`--set KEY=VALUE` options -> a nested mapping (KEY dotted, VALUE a YAML scalar).

    `--set model_args.attention=cbam --set lr=1e-4` -> {"model_args": {"attention": "cbam"},
    "lr": 0.0001}. Later --set of the same key wins.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p.strip() for p in parts):
            raise UsageError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. "
                             f"--set model_args.attention=cbam or --set lr=1e-4")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {item!r}: the value is not valid YAML "
                             f"({getattr(exc, 'problem', exc)}); quote it, e.g. --set 'KEY=\"text\"'") from None
        if isinstance(value, str) and _looks_numeric(value):
            value = float(value)  # YAML 1.1 reads 1e-4 as text; a number was meant
        nested: Any = value
        for part in reversed(parts[1:]):
            nested = {part.strip(): nested}
        out = deep_merge(out, {parts[0]: nested})
    return out


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, merging nested mappings key by key (--set a.b.c=1)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_config(model: str, data: str | Path, out: str | Path, *, preset: str | None = None,
                   config_file: str | Path | None = None, cli: Mapping[str, Any] | None = None,
                   base: Mapping[str, Any] | None = None) -> TrainConfig:
    """Merge defaults < card recipe (with preset) < YAML < CLI options (None = not given).

    `base` (a saved config.json, used by --resume) replaces the defaults, recipe and YAML.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    ignored: list[str] = []

    def apply(layer: Mapping[str, Any], where: str, label: str, strict: bool) -> None:
        normal, skipped = _normalise(layer, where, strict)
        ignored.extend(f"{label}:{k}" for k in skipped)
        for name, value in normal.items():
            if name in _REQUIRED:
                continue
            if name in ("model_args", "loss_args", "miner_args", "augment") and isinstance(value, Mapping):
                value = deep_merge(values.get(name, {}), value)
            values[name] = _coerce(name, value, where)
            sources[name] = label

    if base is not None:
        saved_sources = dict(base.get("sources", {}))
        apply({k: v for k, v in base.items() if k not in ("sources", "resume")}, "config.json",
              "resume", strict=False)
        sources.update({k: v for k, v in saved_sources.items() if k in sources})
    else:
        apply(card_recipe(model, preset), f"model card {model!r} recipe", "card", strict=False)
        if config_file is not None:
            apply(read_yaml(config_file), str(config_file), f"yaml:{config_file}", strict=True)
    given = {k: v for k, v in dict(cli or {}).items() if v is not None}
    apply(given, "command line", "cli", strict=True)
    if preset is not None:
        values["preset"], sources["preset"] = preset, "cli"
    if values.get("pretrained") is None and not values.get("weights"):
        from geobench.models.initial import default_choice

        values["pretrained"] = default_choice(values.get("preset"))
        sources["pretrained"] = "default (paper recipe: imagenet; presets: none)"
    cfg = TrainConfig(model=model, data=str(data), out=str(out), **values,
                      sources={**sources, **({"ignored": ",".join(ignored)} if ignored else {})})
    return validate(cfg)


def write_config(cfg: TrainConfig, extra: Mapping[str, Any] | None = None) -> Path:
    from geobench.fileio import write_json

    path = cfg.run_dir / CONFIG_FILE
    write_json(path, {**cfg.to_json(), **dict(extra or {})})
    return path


def read_config(run: str | Path) -> dict[str, Any]:
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found, {run} is not a training run directory; train one "
                        f"with `geobench train MODEL --data DS --out {run}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); re-run the training") from None
    if not isinstance(data, dict) or "model" not in data:
        raise DataError(f"{path}: not a geobench training config (no 'model'); re-run the training")
    return data
