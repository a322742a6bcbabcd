"""Named implementations of one contract (encoders, losses, miners), built by name from a config or card."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> class. `modules` names, for some names, the module that registers them when imported,
    so a card or config imports only what it builds."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None, modules: dict[str, str] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = dict(entries or {})
        self._modules = dict(modules or {})

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(cls: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = cls
            return cls

        return decorate

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self._entries) | set(self._modules)))

    def __getitem__(self, name: str) -> T:
        if name not in self._entries and name in self._modules:
            importlib.import_module(self._modules[name])
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {list(self)}") from None

    def build(self, name: str, **params: Any) -> Any:
        return self[name](**params)
