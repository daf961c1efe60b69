"""The real-node tier's cluster as library code: the control plane the node joins, and the
images built here imported into the node. The tier's fixtures (conftest.py) and the real-node
benchmarks (bench/gateway/cold_node.py) start the same cluster through these."""

import time
from pathlib import Path

from tests.controlplane.cluster import FAKE_NODE, FAST_HPA, ControlPlane
from tests.node import build_images
from tests.node.node import RealNode

REPO = Path(__file__).resolve().parents[2]


def start_control_plane(workdir: Path) -> ControlPlane:
    cp = ControlPlane(workdir, controller_args=FAST_HPA).start(crds=REPO / "crds")
    # Every pod here must run for real: nothing may land on kwok's simulated node.
    cp.kubectl("cordon", FAKE_NODE["metadata"]["name"])  # type: ignore[index]
    return cp


def start_node(workdir: Path, cp: ControlPlane) -> RealNode:
    started = time.monotonic()
    node = RealNode(workdir, cp).start()
    print(f"node Ready {time.monotonic() - started:.1f}s after start")
    return node


def imported(node: RealNode, name: str) -> str:
    """The image `name` from `make images`' recipe (cached by its inputs), in containerd: its
    reference."""
    started = time.monotonic()
    archive = build_images.build(name, build_images.find_uv(), build_images.Log())
    built = time.monotonic()
    node.import_image(archive)
    print(
        f"image {name}: {archive.stat().st_size / 1e6:.0f} MB compressed, built/cached in"
        f" {built - started:.1f}s, imported in {time.monotonic() - built:.1f}s"
    )
    return build_images.reference(build_images.IMAGES[name])
