"""Code that runs once another package is imported, without importing it: `import modelforge` stays free of
TensorFlow, and modelforge's own Keras layers are still registered before any model is loaded."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Sequence
from types import ModuleType


class _Then(importlib.abc.Loader):
    """A loader that runs `then` once the module it loads has run."""

    def __init__(self, loader: importlib.abc.Loader, then: Callable[[], object]) -> None:
        self.loader, self.then = loader, then

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.then()


class _After(importlib.abc.MetaPathFinder):
    """Finds `name` as the other finders do, and wraps its loader with `then`; gone from sys.meta_path once used."""

    def __init__(self, name: str, then: Callable[[], object]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _Then(spec.loader, self.then)
        return spec


def after_import(name: str, then: Callable[[], object]) -> None:
    """Runs `then` right after the top-level package `name` is first imported (now, if it is already).

    Example:
        >>> seen = []
        >>> after_import("json", lambda: seen.append("json"))
        >>> seen
        ['json']
    """
    if name in sys.modules:
        then()
        return
    if not any(isinstance(f, _After) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _After(name, then))

