"""Name → factory registries (models, datasets, losses), in the style of timm.

A factory is registered by decorating it; its function name is its key and a card of
defaults travels with it. Unknown names fail with the closest matches and the command
that lists every name.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from geobench.errors import UnknownNameError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    name: str
    factory: F
    card: Any


class Registry(Generic[F]):
    def __init__(self, kind: str, list_command: str) -> None:
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, Entry[F]] = {}

    def register(self, card: Any = None, name: str | None = None) -> Callable[[F], F]:
        """Decorator: register `factory` under `name` (default: its function name)."""

        def decorate(factory: F) -> F:
            key = name or factory.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = Entry(key, factory, card)
            return factory

        return decorate

    def entry(self, name: str) -> Entry[F]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def get(self, name: str) -> F:
        return self.entry(name).factory

    def card(self, name: str) -> Any:
        return self.entry(name).card

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[F]]:
        return iter(self._entries[k] for k in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Run `{self.list_command}` to list them all."
