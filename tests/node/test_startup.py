"""The apply -> Ready split of tests/node/startup.py, on the records a cluster keeps."""

import pytest

from tests.node.startup import phases, stamp, table

POD = {
    "metadata": {"creationTimestamp": "2026-12-04T16:00:00Z"},
    "status": {
        "conditions": [
            {"type": "PodScheduled", "lastTransitionTime": "2026-12-04T16:00:01Z"},
            {"type": "Ready", "lastTransitionTime": "2026-12-04T16:00:20Z"},
        ]
    },
}
EVENTS = [
    {"reason": "Scheduled", "firstTimestamp": None, "eventTime": "2026-12-04T16:00:01.000000Z"},
    {"reason": "Pulled", "firstTimestamp": "2026-12-04T16:00:03Z", "eventTime": None},
]
LOG = [
    "2026-12-04T16:00:05.5Z modelkube: preloading OpenBLAS",
    "2026-12-04T16:00:17.25Z model tiny ready (engine: mlx, BLAS: openblas)",
]


def test_log_times_keep_their_fraction_whatever_its_digits() -> None:
    assert stamp("2026-12-04T16:00:05.123456789Z") - stamp("2026-12-04T16:00:05Z") == (
        pytest.approx(0.123456)
    )
    assert stamp("2026-12-04T16:00:05.5Z") - stamp("2026-12-04T16:00:05Z") == 0.5


def test_phases_add_up_to_the_pods_time_from_creation_to_ready() -> None:
    got = phases(POD, EVENTS, LOG, "model tiny ready (")
    assert got == {
        "schedule": 1.0,
        "sandbox+image": 2.0,
        "container start": 2.5,
        "model load": 11.75,
        "Ready": 2.75,
        "total": 20.0,
    }
    parts = sum(v for k, v in got.items() if k != "total")
    assert parts == pytest.approx(got["total"])
    assert "| tiny-0 | 1.0 s | 2.0 s | 2.5 s | 11.8 s | 2.8 s | 20.0 s |" in table({"tiny-0": got})
