"""The suite's xdist groups hold: the tests of a group (`xdist_group`) run on one worker, one after another.

Kill-timing tests rely on it (another's load could move the moment a kill lands), and so do the session fixtures
that a group shares (a trained run, the Ray venv), which would otherwise be made once per worker.
"""

import pytest


@pytest.mark.xdist_group("timing")
def test_every_grouped_test_is_scheduled_with_its_group(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run under `--dist loadgroup` (make test's way): nothing is scheduled by group")
    # pytest-xdist tells its scheduler an item's group by a suffix of its node id; without it, round-robin.
    assert request.node.nodeid.endswith("@timing"), request.node.nodeid
    grouped = [item for item in request.session.items if item.get_closest_marker("xdist_group")]
    lost = [item.nodeid for item in grouped if "@" not in item.nodeid.rsplit("]", 1)[-1]]
    assert not lost, f"--dist loadgroup dropped the groups of {len(lost)} tests, e.g. {lost[0]}"
