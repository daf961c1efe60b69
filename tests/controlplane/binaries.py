"""The control-plane binaries, built from their Go modules and cached by version.

`python -m tests.controlplane.binaries` builds whatever is missing, with progress; a warm
cache makes it a no-op. Binaries live in ~/.cache/modelkube/bin/<module>-<hash>/.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GOMOD_DIR = Path(__file__).parent / "gomod"


@dataclass(frozen=True)
class GoModule:
    directory: str
    packages: tuple[str, ...]
    estimate: str
    # Files copied from a dependency module next to the binaries: (module, path in it).
    assets: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> Path:
        return GOMOD_DIR / self.directory

    def key(self) -> str:
        pinned = (self.path / "go.mod").read_bytes() + (self.path / "go.sum").read_bytes()
        return f"{self.directory}-{hashlib.sha256(pinned).hexdigest()[:12]}"

    def binaries(self) -> list[str]:
        names = [p.rsplit("/", 1)[-1] if p != "." else self.directory for p in self.packages]
        return names + [Path(relative).name for _, relative in self.assets]


MODULES = (
    GoModule(
        "kubernetes",
        (
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl",
        ),
        "about 10 minutes on 2 cores",
    ),
    GoModule("etcd", (".",), "about 2 minutes"),
    GoModule(
        "kwok",
        ("sigs.k8s.io/kwok/cmd/kwok",),
        "about 2 minutes",
        tuple(
            ("sigs.k8s.io/kwok", f"kustomize/stage/{stage}")
            for stage in (
                "node/fast/node-initialize.yaml",
                "pod/fast/pod-ready.yaml",
                "pod/fast/pod-complete.yaml",
                "pod/fast/pod-delete.yaml",
            )
        ),
    ),
)


def cache_root() -> Path:
    base = os.environ.get("MODELKUBE_CACHE_DIR") or str(Path.home() / ".cache" / "modelkube")
    return Path(base) / "bin"


def binary_dir(module: GoModule) -> Path:
    return cache_root() / module.key()


def ensure_binaries() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for module in MODULES:
        target = binary_dir(module)
        if not all((target / b).exists() for b in module.binaries()):
            _build(module, target)
        found.update({b: target / b for b in module.binaries()})
    return found


def _build(module: GoModule, target: Path) -> None:
    if shutil.which("go") is None:
        raise RuntimeError("Go is needed to build the control plane (https://go.dev/dl)")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    print(
        f"building {', '.join(module.binaries())} from the Go module proxy "
        f"(first run only, {module.estimate})",
        flush=True,
    )
    started = time.monotonic()
    # kube-openapi serves broken documents under Go's jsonv2 experiment (see shared notes).
    env = {**os.environ, "CGO_ENABLED": "0", "GOEXPERIMENT": "nojsonv2", "GOFLAGS": "-mod=readonly"}
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", f"{staging}/", *module.packages],
        cwd=module.path,
        env=env,
        check=True,
    )
    for dependency, relative in module.assets:
        source = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", dependency],
            cwd=module.path,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        shutil.copy(Path(source) / relative, staging / Path(relative).name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    print(f"built {module.directory} in {time.monotonic() - started:.0f}s -> {target}", flush=True)


if __name__ == "__main__":
    for name, path in ensure_binaries().items():
        print(f"{name}: {path}")
    sys.exit(0)
