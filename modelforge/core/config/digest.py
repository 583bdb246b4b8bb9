"""A run's config as it was when the run claimed its folder: the keys that can change its results, and a digest.

`resume` (of a run, of a sweep, a SLURM requeue) compares the config it is about to continue with against this
record, so an edited config.yaml or a sweep re-launched with other overrides never mixes two configs in one
run. Keys that cannot change results (how much the run prints, where it logs, Hydra's own: `core.config.keys` says
which) may differ, and a record written while a key was still counted as result-affecting resumes without it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from modelforge.core.config.keys import changes_results, dotted


def result_keys(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as dotted keys, only those that can change a run's numbers (`core.config.keys`); values as
    JSON gives them.

    Example:
        >>> result_keys({"seed": 1, "trainer": {"verbose": 0, "epochs": 3}, "logger": {"name": "csv"}})
        {'seed': 1, 'trainer.epochs': 3}
    """
    return dotted(resolved, lambda meaning: meaning.results)


def digest(values: Mapping[str, Any]) -> str:
    """A short SHA-256 of `result_keys`' output, the same whatever the keys' order.

    Example:
        >>> digest({"a": 1, "b": [2]}) == digest({"b": [2], "a": 1})
        True
    """
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """What metrics.json keeps of a run's config: `{"digest": ..., "values": {dotted key: value}}`."""
    values = result_keys(resolved)
    return {"digest": digest(values), "values": values}


def changes(recorded: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Each result-affecting key whose value differs between a recorded config and `resolved`, as (key, old,
    new); a key on one side only has None on the other.

    Example:
        >>> changes(record({"seed": 0, "trainer": {"verbose": 0}}), {"seed": 2, "trainer": {"verbose": 1}})
        [('seed', 0, 2)]
        >>> changes({"digest": "older", "values": {"seed": 0, "trainer.diagnose": True}}, {"seed": 0})
        []
    """
    new = result_keys(resolved)
    if recorded.get("digest") == digest(new):
        return []
    old = {k: v for k, v in dict(recorded.get("values") or {}).items() if changes_results(k)}
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
