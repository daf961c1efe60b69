"""The units of work pytest-xdist hands its workers (`make test` runs `pytest -n 2`).

pytest-xdist's own `--dist loadgroup` cannot be used: it tags a test's group onto
`item._nodeid`, which pytest 9.2 no longer reads (a node's id is `_id` now), so the groups are
silently lost and every test becomes a unit of its own.
"""

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from tests.conftest import REAL_MODEL_MODULES

# Where every `real_node` test lives (tests/conftest.py refuses one anywhere else).
REAL_NODE_PACKAGE = "tests/node/"


class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """One test module is one unit, so its module-scoped fixtures (a runtime, a gateway, a
    Prometheus) start once; all of tests/node is one unit, so one worker alone holds the real
    node's host-global state (bridge mkcni0, /kubepods cgroups, KUBE-* iptables chains); the
    real-model serving modules are one unit, so their shared runtimes start once.

    Units go out in collection order, which tests/conftest.py starts with the real node and
    then the real model: the longest units, which would set the run's end if they started last."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        config.option.loadscopereorder = False
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.startswith(REAL_NODE_PACKAGE):
            return REAL_NODE_PACKAGE
        if nodeid.startswith(REAL_MODEL_MODULES):
            return REAL_MODEL_MODULES
        return nodeid.split("::", 1)[0]


class XdistScopes:
    """Registered by tests/conftest.py only where pytest-xdist is installed (the free-threaded
    venv of `make freethreaded-test` has no xdist, and this hook would be unknown there)."""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> ModuleScheduling:
        return ModuleScheduling(config, log)
