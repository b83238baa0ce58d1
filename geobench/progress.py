"""Progress bars on stderr (rich), silenced by `--quiet`.

Library code wraps long loops in `track(...)` or uses `bar(...)`; the CLI decides
whether they show by calling `set_quiet`. Results never go through here.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")

_quiet: ContextVar[bool] = ContextVar("geobench_quiet", default=False)


def set_quiet(quiet: bool) -> None:
    _quiet.set(bool(quiet))


def is_quiet() -> bool:
    return _quiet.get()


class _Bar:
    """A handle with `advance(n)` and `update(total=...)`, a no-op when quiet."""

    def __init__(self, progress, task) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, **kwargs) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **kwargs)


@contextlib.contextmanager
def bar(description: str, total: float | None = None) -> Iterator[_Bar]:
    if is_quiet():
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    )
    with progress:
        yield _Bar(progress, progress.add_task(description, total=total))


def track(items: Iterable[T], description: str, total: float | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(description, total) as handle:
        for item in items:
            yield item
            handle.advance()
