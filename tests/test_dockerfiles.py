"""The CUDA runtime's Dockerfile, read for what it must hold (the CPU runtime and the operator
images are built by `make images`, tests/node/build_images.py, with no Dockerfile).

Pinned base images (an exact version, never `latest`), a numeric non-root final USER equal to
the pods' runAsUser, multi-stage builds whose final stage has no build tools, and Python
dependencies installed from uv.lock.
"""

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from modelkube_operator.builders.common import restricted_pod_context

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {"runtime-cuda": REPO / "serving" / "Dockerfile.cuda"}
# registry/name:tag with a version of at least major.minor, e.g. python:3.12.12-slim-bookworm.
_PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+(\.\d+)?[\w.-]*(@sha256:[0-9a-f]{64})?$")
MEMBERS = ("operator", "serving", "native")
_BUILD_TOOLS = ("gcc", "g++", "build-essential", "cargo", "rustc", "rustup", "-dev", "maturin")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(path: Path) -> list[Stage]:
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        ),
    )
    stages: list[Stage] = []
    for line in filter(str.strip, text.splitlines()):
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            image, _, name = args.partition(" AS ")
            stages.append(Stage(image.strip(), name.strip() or None))
        else:
            stages[-1].instructions.append((keyword.upper(), " ".join(args.split())))
    return stages


def _external_images(stages: list[Stage]) -> list[str]:
    names = {s.name for s in stages}
    images = [s.image for s in stages if s.image not in names]
    for stage in stages:
        for args in stage.all("COPY"):
            match = re.search(r"--from=(\S+)", args)
            if match and match[1] not in names:
                images.append(match[1])
    return images


@pytest.mark.parametrize("path", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_base_images_are_pinned(path: Path) -> None:
    images = _external_images(parse(path))
    assert images
    for image in images:
        assert _PINNED.match(image), f"{path.name}: {image} is not pinned to a version"
        assert "latest" not in image


@pytest.mark.parametrize("path", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_final_stage_runs_as_the_pods_uid_without_build_tools(path: Path) -> None:
    stages = parse(path)
    final = stages[-1]
    assert len(stages) > 1 and final.name is None, "multi-stage, the last stage unnamed"
    uid = restricted_pod_context()["runAsUser"]
    chart = yaml.safe_load((REPO / "charts" / "modelkube" / "values.yaml").read_text())
    assert chart["podSecurityContext"]["runAsUser"] == uid
    assert final.all("USER")[-1] == f"{uid}:{uid}"
    runs = " ".join(final.all("RUN"))
    for tool in _BUILD_TOOLS:
        assert tool not in runs, f"{path.name}: {tool} in the final stage"
    copies = final.all("COPY")
    assert all("--from=build" in c for c in copies), "only the built environment is copied"
    assert final.all("ENTRYPOINT") == ['["modelkube"]']


@pytest.mark.parametrize("path", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_dependencies_come_from_the_lock(path: Path) -> None:
    build = " ".join(args for stage in parse(path)[:-1] for args in stage.all("RUN"))
    assert "--frozen" in build
    assert "pip install" not in build or "--require-hashes" in build


def test_the_cuda_runtime_builds_the_native_core_and_picks_its_mlx() -> None:
    cuda = parse(DOCKERFILES["runtime-cuda"])
    build = cuda[-2]
    assert "COPY native native" in [f"COPY {c}" for c in build.all("COPY")]
    assert any("MATURIN_PEP517_ARGS=--locked" in env for env in build.all("ENV"))
    cuda_build = " ".join(build.all("RUN"))
    assert "--no-emit-package mlx-cpu" in cuda_build and "mlx[cuda12]" in cuda_build


@pytest.mark.parametrize("name", ["runtime-cuda"])
def test_runtime_images_hold_the_workspace_members_the_runtime_needs(name: str) -> None:
    """modelkube-serving depends on modelkube-operator (its Kubernetes client): the image must
    copy the operator's sources too, and its .dockerignore let them through."""
    manifest = tomllib.loads((REPO / "serving" / "pyproject.toml").read_text())
    members = {
        dep.removeprefix("modelkube-")
        for dep in manifest["project"]["dependencies"]
        if dep.startswith("modelkube-")
    }
    assert members == {"native", "operator"}
    path = DOCKERFILES[name]
    copies = [c.split() for c in parse(path)[-2].all("COPY") if not c.startswith("--from")]
    copied = {source for args in copies for source in args[:-1]}
    ignore = Path(f"{path}.dockerignore").read_text().splitlines()
    for member in members:
        source = member if member == "native" else f"{member}/src"
        assert source in copied, f"{path.name} does not copy {source}"
        sources = [line for line in ignore if line.startswith(f"!{member}/")]
        assert set(sources) - {f"!{member}/pyproject.toml"}, f"{path.name}.dockerignore: {member}"
