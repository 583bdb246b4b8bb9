"""A backport of one Hydra 1.4 fix that every modelforge command line benefits from.

Hydra 1.3's `StructuredConfigSource` keeps a reference to the ConfigStore, and every
`CachingConfigRepository` deep-copies its sources, so each config lookup copies the whole store: Hydra's
own configs, every installed plugin's (launchers, sweepers) and modelforge's schemas. `--help` makes over a
hundred such lookups, which was most of its time. Hydra PR 2928 (merged for 1.4) stops storing the
singleton; copying the source without the store is the same behaviour, since `ConfigStore.load` already
hands out a fresh copy of each node.
"""

from __future__ import annotations

import copy
from typing import Any


def share_config_store() -> bool:
    """Makes copies of Hydra 1.3's structured config source share the ConfigStore; True when applied.

    Does nothing on a Hydra whose source no longer holds the store, or when already applied.
    """
    try:  # an optimization only: on any Hydra it does not recognise, leave Hydra as it is
        from hydra._internal.sources_registry import SourcesRegistry
        from hydra.core.plugins import Plugins

        # Hydra's plugin scan re-executes its core plugin modules, making new classes: patch the one it uses.
        Plugins.instance()
        source_class = SourcesRegistry.instance().resolve("structured")
        if "__deepcopy__" in vars(source_class):
            return False
        probe = source_class(provider="modelforge", path="structured://")
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    if "store" not in vars(probe):  # Hydra >= 1.4 fetches the singleton on each call: nothing to fix
        return False

    def __deepcopy__(self: Any, memo: dict[int, Any]) -> Any:
        clone = copy.copy(self)  # provider and path are strings; the store is the process-wide singleton
        memo[id(self)] = clone
        return clone

    source_class.__deepcopy__ = __deepcopy__  # type: ignore[attr-defined]
    return True
