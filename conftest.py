"""The doctests' namespace: `composed`, modelforge's config as Hydra composes it (a small model, one epoch), as
plain containers. Composed, not written out, so that conf/ stays the one home of the defaults."""

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _doctest_composed(doctest_namespace: dict[str, Any]) -> None:
    from tests.helpers import composed_plain

    doctest_namespace["composed"] = composed_plain()
