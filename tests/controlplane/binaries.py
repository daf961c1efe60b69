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
    # `-X` settings, as the project's own Makefile passes them.
    ldflags: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return GOMOD_DIR / self.directory

    def key(self) -> str:
        pinned = (self.path / "go.mod").read_bytes() + (self.path / "go.sum").read_bytes()
        pinned += " ".join(self.ldflags).encode()
        return f"{self.directory}-{hashlib.sha256(pinned).hexdigest()[:12]}"

    def binaries(self) -> list[str]:
        names = [p.rsplit("/", 1)[-1] if p != "." else self.directory for p in self.packages]
        return names + [Path(relative).name for _, relative in self.assets]


# The version a release build stamps in (hack/lib/version.sh): without it the API server says
# v0.0.0-master, and a chart's `kubeVersion: >= 1.29` refuses to install.
KUBERNETES_LDFLAGS = tuple(
    f"-X k8s.io/{package}/version.{name}={value}"
    for package in ("component-base", "client-go/pkg")
    for name, value in (("gitVersion", "v1.36.3"), ("gitMajor", "1"), ("gitMinor", "36"))
)

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
        ldflags=KUBERNETES_LDFLAGS,
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
    GoModule(
        "helm",
        ("helm.sh/helm/v3/cmd/helm",),
        "about 3 minutes",
        # Without these, helm calls itself "v3.22" and assumes a Kubernetes 1.20 cluster for
        # `helm lint` and `helm template` (its Makefile derives 1.37 from client-go v0.37).
        ldflags=(
            "-X helm.sh/helm/v3/internal/version.version=v3.22.0",
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37",
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37",
        ),
    ),
    # Nothing to build: the Prometheus Operator's CRDs, for the chart's custom resources.
    GoModule(
        "prometheus-operator",
        (),
        "seconds",
        tuple(
            (
                "github.com/prometheus-operator/prometheus-operator",
                f"example/prometheus-operator-crd/monitoring.coreos.com_{plural}.yaml",
            )
            for plural in ("servicemonitors", "prometheusrules")
        ),
    ),
    # Nothing to build: KEDA's ScaledObject CRD, for the operator's KEDA e2e test.
    GoModule(
        "keda",
        (),
        "seconds",
        (("github.com/kedacore/keda/v2", "config/crd/bases/keda.sh_scaledobjects.yaml"),),
    ),
    # Nothing to build: the Gateway API Inference Extension's InferencePool CRD (v1).
    GoModule(
        "inference-extension",
        (),
        "seconds",
        (
            (
                "sigs.k8s.io/gateway-api-inference-extension",
                "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml",
            ),
        ),
    ),
)

# The real node (tests/node): a module of its own, so that building it leaves the control plane's
# cache key alone; `make controlplane` builds it too, so the tests find it cached.
NODE_MODULE = GoModule(
    "node",
    ("k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy"),
    "about 1.5 minutes after the control plane's build",
    ldflags=KUBERNETES_LDFLAGS,
)

# The real node's cluster DNS: Services resolve by name in its pods (`helm test`'s pod).
COREDNS_MODULE = GoModule("coredns", ("github.com/coredns/coredns",), "about 5 minutes")

# The HPA's custom metrics (tests/node): serves the runtime's in-flight requests from Prometheus
# as custom.metrics.k8s.io, with the rule file the README documents.
PROMETHEUS_ADAPTER_MODULE = GoModule(
    "prometheus-adapter", ("sigs.k8s.io/prometheus-adapter/cmd/adapter",), "about 5 minutes"
)


def cache_root() -> Path:
    base = os.environ.get("MODELKUBE_CACHE_DIR") or str(Path.home() / ".cache" / "modelkube")
    return Path(base) / "bin"


def binary_dir(module: GoModule) -> Path:
    return cache_root() / module.key()


def ensure_binaries(modules: tuple[GoModule, ...] = MODULES) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for module in modules:
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
    ldflags = " ".join(("-s -w", *module.ldflags))
    if module.packages:
        command = ["go", "build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{staging}/"]
        subprocess.run([*command, *module.packages], cwd=module.path, env=env, check=True)
    else:  # only files out of a module: download it
        dependencies = sorted({dependency for dependency, _ in module.assets})
        download = ["go", "mod", "download", *dependencies]
        subprocess.run(download, cwd=module.path, env=env, check=True)
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
    for name, path in ensure_binaries(
        (*MODULES, NODE_MODULE, COREDNS_MODULE, PROMETHEUS_ADAPTER_MODULE)
    ).items():
        print(f"{name}: {path}")
    sys.exit(0)
