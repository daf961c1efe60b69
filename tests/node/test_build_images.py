"""The image recipe (`make images`), read for what the images must hold; the real-node tier
(test_real_node_e2e.py) builds them and runs them as pods."""

import tomllib
from pathlib import Path

import pytest
import yaml
from modelkube_operator.builders.common import restricted_pod_context
from modelkube_operator.images import DEFAULT_RUNTIME

from tests.node import build_images
from tests.node.build_images import IMAGES, OPERATOR, RUNTIME, ImageSpec

REPO = Path(__file__).resolve().parents[2]
_BUILD_TOOLS = ("gcc", "g++", "build-essential", "cargo", "rustc", "rustup", "-dev", "maturin")


@pytest.mark.parametrize("spec", IMAGES.values(), ids=IMAGES.keys())
def test_images_run_as_the_pods_uid_with_a_path_to_the_environment(spec: ImageSpec) -> None:
    uid = restricted_pod_context()["runAsUser"]
    chart = yaml.safe_load((REPO / "charts" / "modelkube" / "values.yaml").read_text())
    assert chart["podSecurityContext"]["runAsUser"] == uid
    config = build_images.image_config(spec)
    assert config["User"] == f"{uid}:{uid}"
    assert config["Entrypoint"] == ["modelkube"]
    env = dict(line.split("=", 1) for line in config["Env"])  # type: ignore[attr-defined]
    assert env["PATH"].startswith(f"{build_images.VENV}/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only


@pytest.mark.parametrize("spec", IMAGES.values(), ids=IMAGES.keys())
def test_images_hold_no_build_tools_and_the_locked_environment(spec: ImageSpec) -> None:
    for package in spec.debian:
        assert not any(tool in package for tool in _BUILD_TOOLS), package
    assert "uv sync --frozen --no-dev --no-editable" in build_images.sync_command(spec)
    assert "usr/local/bin/uv" in build_images.BUILD_LEFTOVERS


def test_tags_are_the_charts_app_version_and_the_operators_default() -> None:
    chart = yaml.safe_load((REPO / "charts" / "modelkube" / "Chart.yaml").read_text())
    assert build_images.reference(RUNTIME) == f"ghcr.io/modelkube/runtime:{chart['appVersion']}"
    assert build_images.reference(OPERATOR).endswith(f":{chart['appVersion']}")
    assert build_images.reference(RUNTIME) == DEFAULT_RUNTIME


def test_the_runtime_holds_the_workspace_members_it_depends_on() -> None:
    manifest = tomllib.loads((REPO / "serving" / "pyproject.toml").read_text())
    members = {
        dep.removeprefix("modelkube-")
        for dep in manifest["project"]["dependencies"]
        if dep.startswith("modelkube-")
    }
    assert members == {"native", "operator"}
    assert RUNTIME.native and set(RUNTIME.sources) == {"serving", "operator"}
    assert "libopenblas0-pthread" in RUNTIME.debian
    assert OPERATOR.sources == ("operator",) and not OPERATOR.native


def test_the_cache_key_follows_the_sources() -> None:
    key = build_images.input_key(OPERATOR, "0.13.9")
    assert key == build_images.input_key(OPERATOR, "0.13.9")
    assert key != build_images.input_key(OPERATOR, "0.13.10")
    assert key != build_images.input_key(RUNTIME, "0.13.9")


def test_the_cache_key_ignores_what_a_build_leaves_among_the_sources() -> None:
    # The extension `make python-deps` writes into native/python differs on every build, so
    # a fresh clone would miss the image cache if it were hashed.
    built = build_images.REPO / "native" / "python" / "modelkube_native" / "_native.abi3.so"
    assert build_images._built_here(built)
    assert not build_images._built_here(built.with_name("__init__.py"))
    assert built not in set(build_images._input_files(RUNTIME))


def test_the_rust_core_wheel_is_keyed_by_the_native_sources_alone() -> None:
    """A change to the Python sources rebuilds the runtime image but reuses the cached wheel."""
    inputs = set(build_images._native_input_files())
    assert inputs <= set(build_images._input_files(RUNTIME))
    assert build_images.NATIVE / "llama" / "build.rs" in inputs
    assert build_images.NATIVE / "Cargo.lock" in inputs
    members = [build_images.REPO / member for member in ("serving", "operator")]
    assert not [path for path in inputs if any(m in path.parents for m in members)]
    assert build_images.native_wheel_key() == build_images.native_wheel_key()
