"""Registry[T]: a named collection of factories (models, norms, inits, datasets, probes, tasks).

`register(name)` is a decorator; `get(name)` returns the factory or raises a UserError that names the
closest choices (all of them when there are few); `names()` lists them in registration order.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Collection
from typing import Any, Generic, TypeVar

from bnlab.errors import UserError

T = TypeVar("T")
MAX_LISTED = 10  # an unknown-name error lists every choice up to this many


class Registry(Generic[T]):
    def __init__(self, kind: str, lister: str | None = None) -> None:
        self.kind = kind
        self.lister = lister  # the command that lists every name (`bnlab ls probes`), where there is one
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
            raise UserError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        """One sentence for an unknown name: the closest names, and every name — unless there are many and a
        command lists them (`lister`), so the message stays one readable line."""
        names = self.names()
        close = difflib.get_close_matches(name, names, n=2, cutoff=0.6)
        close += [n for n in names if name and (n.startswith(name) or name in n) and n not in close]
        hint = f" (did you mean {' or '.join(close[:2])}?)" if close else ""
        if len(names) <= MAX_LISTED or not self.lister:
            return f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(names)}"
        return f"unknown {self.kind} {name!r}{hint}; `{self.lister}` lists all {len(names)}"

    def names(self) -> list[str]:
        return list(self._items)

    def doc(self, name: str) -> str:
        return self._docs.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._items


def lazy_getattr(
    package: str, names: dict[str, tuple[str, str]], subpackages: Collection[str] = ()
) -> Callable[[str], Any]:
    """A package's module-level `__getattr__` (PEP 562): `names[name] = (module, attribute)` and the
    `subpackages` are imported on first use, so importing the package stays cheap."""

    def __getattr__(name: str) -> Any:
        if name in names:
            module, attr = names[name]
            return getattr(importlib.import_module(module), attr)
        if name in subpackages:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
