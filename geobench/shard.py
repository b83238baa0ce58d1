"""Work over many machines: `--shard I/N` takes a contiguous, deterministic share of a
stage's items; `--shard merge` checks every share and writes what one whole run writes.

A scheduler's array job runs the same command with `--shard auto` (the index is read from
SLURM_ARRAY_TASK_ID, less SLURM_ARRAY_TASK_MIN when it is set, plus one; the count from
SLURM_ARRAY_TASK_COUNT). Share I of N is items [floor((I-1)n/N), floor(In/N)), so shares
never overlap, cover every item, and do not depend on the machine. Each shard writes its
outputs and one record, `OUT/.shards/<stage>.<I>-of-<N>.json`; the merge step reads the
records, refuses a missing, repeated or foreign share in one line, and then writes the
stage's own record and removes the shard records.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geobench.errors import DataError, UsageError

SHARDS_DIR = ".shards"
MERGE = "merge"


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def share(self, n: int) -> tuple[int, int]:
        """[start, end) of this shard's items among n."""
        return (self.index - 1) * n // self.count, self.index * n // self.count

    @property
    def label(self) -> str:
        return f"{self.index}-of-{self.count}"


def parse_shard(text: str | None, option: str = "--shard",
                env: Mapping[str, str] = os.environ) -> Shard | str | None:
    """None (no sharding), a Shard, or MERGE."""
    if text is None:
        return None
    value = text.strip().lower()
    if value == MERGE:
        return MERGE
    if value == "auto":
        return _from_scheduler(option, env)
    index, sep, count = value.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 1 <= shard.index <= shard.count:
        raise UsageError(f"{option} {text!r}: expected I/N with 1 <= I <= N (e.g. 2/8), auto "
                         f"(from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT) or merge")
    return shard


def _from_scheduler(option: str, env: Mapping[str, str]) -> Shard:
    task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        raise UsageError(f"{option} auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not "
                         f"set (not inside an array job); pass {option} I/N instead")
    try:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "1"))
        shard = Shard(int(task) - first + 1, int(count))
    except ValueError:
        shard = None
    if shard is None or not 1 <= shard.index <= shard.count:
        raise UsageError(f"{option} auto: SLURM_ARRAY_TASK_ID={task} (min "
                         f"{env.get('SLURM_ARRAY_TASK_MIN', '1')}) and SLURM_ARRAY_TASK_COUNT="
                         f"{count} give no share; use a contiguous --array range or {option} I/N")
    return shard


def record_path(out: Path, stage: str, shard: Shard) -> Path:
    return Path(out) / SHARDS_DIR / f"{stage}.{shard.label}.json"


def read_record(out: Path, stage: str, shard: Shard) -> dict[str, Any] | None:
    """This shard's earlier record (to resume), or None."""
    path = record_path(out, stage, shard)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def shard_fields(shard: Shard, total: int) -> dict[str, int]:
    """What a shard record says of its share (read back by `collect`)."""
    start, end = shard.share(total)
    return {"index": shard.index, "count": shard.count, "start": start, "end": end, "total": total}


def write_record(out: Path, stage: str, shard: Shard, total: int, record: dict[str, Any]) -> Path:
    from geobench.fileio import write_json

    path = record_path(out, stage, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**record, "shard": shard_fields(shard, total)})
    return path


def collect(out: Path, stage: str, total: int, parameters: Any, command: str) -> list[dict[str, Any]]:
    """Every shard record of `stage` under `out`, checked to be one complete split of `total`
    items made with `parameters`; in index order."""
    folder = Path(out) / SHARDS_DIR
    paths = sorted(folder.glob(f"{stage}.*-of-*.json")) if folder.is_dir() else []
    if not paths:
        raise DataError(f"{folder}: no {stage} shard records; run `{command} --shard I/N` for "
                        f"every I first")
    records = []
    for path in paths:
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            raise DataError(f"{path}: unreadable shard record; re-run that shard") from None
    counts = sorted({r["shard"]["count"] for r in records})
    if len(counts) > 1:
        raise DataError(f"{folder}: shard records of different splits (N = "
                        f"{', '.join(map(str, counts))}) overlap; delete the ones of the split you "
                        f"abandoned and re-run the merge")
    n = counts[0]
    for r in records:
        if r["shard"]["total"] != total or r.get("parameters") != parameters:
            raise DataError(f"{folder}: shard {r['shard']['index']}/{n} was made from "
                            f"{r['shard']['total']} items or other parameters (this merge: "
                            f"{total} items); re-run `{command} --shard {r['shard']['index']}/{n}`")
    have = {r["shard"]["index"] for r in records}
    missing = [i for i in range(1, n + 1) if i not in have]
    if missing:
        raise DataError(f"{folder}: shard(s) {', '.join(f'{i}/{n}' for i in missing)} have no "
                        f"record; run `{command} --shard {missing[0]}/{n}` (each missing I), then "
                        f"merge again")
    records.sort(key=lambda r: r["shard"]["index"])
    incomplete = [r["shard"]["index"] for r in records if not r.get("complete")]
    if incomplete:
        raise DataError(f"{folder}: shard(s) {', '.join(f'{i}/{n}' for i in incomplete)} did not "
                        f"finish; re-run `{command} --shard {incomplete[0]}/{n}` (it resumes)")
    return records


def remove_records(out: Path, stage: str) -> None:
    folder = Path(out) / SHARDS_DIR
    for path in folder.glob(f"{stage}.*-of-*.json"):
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # other stages' records remain
