"""What every command module shares: the Typer `app`, the `command` decorator that turns
library errors into one-line messages and exit codes, the common option types and the
small parsing and printing helpers.

Only typer and geobench's light modules are imported here, so `geobench --help` stays
instant; heavy libraries are imported inside the commands.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from geobench.errors import (
    GeobenchError,
    UsageError,
    interrupted_message,
    one_line,
    user_message,
)
from geobench.progress import set_quiet
from geobench.validation import check_options, check_size

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
SHARD_HELP = ("I/N: do the I-th of N contiguous shares (1-based; auto: from SLURM_ARRAY_TASK_ID "
              "and SLURM_ARRAY_TASK_COUNT); merge: check every share and write the whole run's "
              "record.")
WEIGHTS_HELP = ("Local weights file: the whole model (a geobench run's checkpoint, or a released "
                "LRFR / Sample4Geo / MixVPR checkpoint) or a backbone (torchvision/timm names).")


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


def command(*args: Any, group: typer.Typer | None = None, examples: list[str] | None = None,
            **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command (on `app`, or on a sub-command `group`) whose GeobenchErrors
    become one-line messages and exit codes; `examples` become the help's epilog."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        name = args[0] if args else func.__name__

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            set_quiet(bool(kw.get("quiet", False)))
            try:
                check_options(name, kw)  # every numeric option in range before any work
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

        if examples:
            # \b keeps click from re-wrapping the example lines into one paragraph.
            kwargs.setdefault("epilog", "\b\nExamples:\n" + "\n".join(
                f"  {line}" for line in examples))
        return (group or app).command(*args, **kwargs)(wrapper)

    return decorate


@contextlib.contextmanager
def one_line_warnings() -> Any:
    """Warnings appear as one `warning: ...` line on stderr, once each: geobench's own and
    those of the libraries under it (torch's come as the message plus its source line)."""
    import warnings

    from geobench.errors import GeobenchWarning

    seen: set[str] = set()

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        text = one_line(str(message))
        if text not in seen:
            seen.add(text)
            typer.echo(f"warning: {text}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default", GeobenchWarning)
        warnings.showwarning = show
        yield


def warn(message: str) -> None:
    typer.echo(f"warning: {one_line(message)}", err=True)


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
    return check_size(h, w, option)


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


def difficulty_option(difficulty: str | None, preset: str | None, default: str) -> str:
    """--difficulty, or its deprecated spelling --preset (which means model size in train)."""
    if preset is not None:
        if difficulty is not None and difficulty != preset:
            raise UsageError(f"--preset {preset} and --difficulty {difficulty} disagree; "
                             f"--preset is the deprecated name of --difficulty, pass only that")
        warn(f"--preset is deprecated here and will be removed in the next release: write "
             f"--difficulty {preset} (in `geobench train`, --preset is the model size)")
        return preset
    return difficulty or default


def shard_lock(part: object) -> dict[str, object]:
    """claim_output arguments for a shard: its own lock (shards of one output run side by
    side) and no removal of temporaries another machine's shard may still be writing."""
    from geobench.guard import LOCK_NAME
    from geobench.shard import Shard

    if isinstance(part, Shard):
        return {"lock_name": f"{LOCK_NAME}.shard-{part.label}", "clean": False}
    return {}
