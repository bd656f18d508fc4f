"""Registry[T]: a named collection of factories (models, norms, inits, datasets, probes, tasks).

`register(name)` is a decorator; `get(name)` returns the factory or raises a UserError that lists
the valid choices; `names()` lists them in registration order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from bnlab.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, doc: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            text = doc if doc is not None else (getattr(obj, "__doc__", None) or "")
            self._docs[name] = text.strip().splitlines()[0] if text.strip() else ""
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def doc(self, name: str) -> str:
        return self._docs.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._items
