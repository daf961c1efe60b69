"""How the suite runs: the real-node tests stay together and come last alone, first under
pytest-xdist (whose units of work tests/xdist_scopes.py draws)."""

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REAL_NODE_DIR = TESTS / "node"
# The serving modules on builtin://smollm2-135m-instruct, which share one runtime process of it
# per engine and per worker (session fixtures): as one xdist unit they start each once, not twice.
REAL_MODEL_MODULES = "tests/serving/test_real_model"


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        from tests.xdist_scopes import XdistScopes

        config.pluginmanager.register(XdistScopes(), "modelkube-xdist-scopes")


def under_xdist() -> bool:
    return os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Alone, the real-node tests run last, so the node stops when they end instead of idling
    through the rest of the run. Under xdist they run first: they are the longest unit of work,
    and a unit that starts last sets the run's end while the other workers sit idle."""
    real = [item for item in items if item.get_closest_marker("real_node")]
    for item in real:
        if REAL_NODE_DIR not in item.path.parents:
            # xdist keeps tests/node on one worker; a real node elsewhere could start twice.
            raise pytest.UsageError(f"{item.nodeid}: a real_node test must live in tests/node/")
    rest = [item for item in items if not item.get_closest_marker("real_node")]
    if under_xdist():
        # The real-model unit next (tests/xdist_scopes.py), the other long one.
        model = [item for item in rest if item.nodeid.startswith(REAL_MODEL_MODULES)]
        rest = [item for item in rest if not item.nodeid.startswith(REAL_MODEL_MODULES)]
        items[:] = real + model + rest
    else:
        items[:] = rest + real
