"""A real control plane on 127.0.0.1: etcd, kube-apiserver, controller-manager, scheduler, kwok.

Used by the e2e tests and `make demo`. Authentication is by static bearer tokens with RBAC on,
so the operator can run under exactly its ClusterRole, not as cluster admin.
"""

import secrets
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.controlplane.binaries import ensure_binaries
from tests.controlplane.pki import FRONT_PROXY_CLIENT, KubeletPki, write_front_proxy
from tests.controlplane.stages import write_stages
from tests.processes import stop_process
from tests.serving.runtime_process import free_port

ADMIN = "modelkube-admin"
SERVICE_CIDR = "10.96.0.0/16"
# The HPA controller syncing every 2 s (its default: 15 s), so a test sees a whole load step,
# up and back down; how long the load must stay low before it scales down is the
# ModelService's own `autoscaling.scaleDownDelaySeconds` (the cluster's default: 5 minutes).
FAST_HPA = ("--horizontal-pod-autoscaler-sync-period=2s",)


@dataclass
class ControlPlane:
    workdir: Path
    bins: dict[str, Path] = field(default_factory=ensure_binaries)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    api_port: int = field(default_factory=free_port)
    # More kube-controller-manager flags, such as FAST_HPA.
    controller_args: tuple[str, ...] = ()

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def start(self, crds: Path | None = None) -> "ControlPlane":
        """Start everything; CRDs in `crds` go in before the controllers, so the garbage
        collector discovers their kinds at once instead of at its next 30 s resync."""
        try:
            self._start_all(crds)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self, crds: Path | None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_etcd()
        self._start_apiserver()
        write_kubeconfig(self.admin_kubeconfig, self.server, self.ca_file, self.admin_token)
        self._wait("kube-apiserver", lambda: self._get("/readyz") == 200, 60)
        if crds is not None:
            self.kubectl("apply", "--server-side", "-f", str(crds))
            self.wait_served("--all")
        self._start(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.admin_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.workdir / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                "--controllers=*,-nodeipam",
                "--concurrent-gc-syncs=10",
                *self.controller_args,
            ],
        )
        self._start(
            "kube-scheduler",
            [
                f"--kubeconfig={self.admin_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
        )
        self._start(
            "kwok",
            [
                f"--kubeconfig={self.admin_kubeconfig}",
                f"--config={write_stages(self.workdir)}",
                # Only the simulated nodes: a real node (tests/node) runs its own kubelet.
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{free_port()}",
                "--node-lease-duration-seconds=40",
            ],
        )
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(FAKE_NODE))

    @property
    def kubelet_pki(self) -> KubeletPki:
        """The CA a real node's kubelet trusts the API server by, and signs its serving
        certificate with (tests/node): `kubectl logs` and `exec` go through it."""
        return KubeletPki(self.workdir / "pki-kubelet")

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "apiserver.crt"

    def _start_etcd(self) -> None:
        self.etcd_port = free_port()
        self._start(
            "etcd",
            [
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{free_port()}",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
        )

    def _start_apiserver(self) -> None:
        key = self.workdir / "sa.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        kubelet_pki = KubeletPki.make(self.kubelet_pki.directory)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN},{ADMIN},"system:masters"\n')
        proxy = write_front_proxy(self.workdir / "pki" / "front-proxy")
        self._start(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.workdir / 'pki'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                # The aggregation layer, for APIServices such as prometheus-adapter's
                # custom.metrics.k8s.io; routed to the Service's endpoint, not its ClusterIP,
                # so an extension server may run as a process outside any pod.
                f"--requestheader-client-ca-file={proxy.ca}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={proxy.cert}",
                f"--proxy-client-key-file={proxy.key}",
                "--enable-aggregator-routing=true",
                *kubelet_pki.apiserver_args(),
            ],
        )

    def _start(self, name: str, args: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:  # the child keeps its own copy
            self.procs[name] = subprocess.Popen(
                [str(self.bins[name]), *args], stdout=log, stderr=log
            )

    def _get(self, path: str) -> int:
        if not self.ca_file.exists():
            return 0
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        try:
            url = f"{self.server}{path}"
            context = ssl.create_default_context(cafile=str(self.ca_file))
            return httpx.get(url, verify=context, timeout=2, headers=headers).status_code
        except (httpx.TransportError, OSError):
            return 0

    def wait_served(self, *crds: str) -> None:
        """The CRDs are Established and their objects can be listed: a new CRD's storage answers
        429 "storage is (re)initializing" for a while after, and an operator started then
        handles nothing until every list it indexes has answered."""
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", *crds)
        names = list(crds)
        if crds == ("--all",):
            names = self.kubectl(
                "get", "crd", "-o", "jsonpath={.items[*].metadata.name}"
            ).stdout.split()

        def listed() -> bool:
            got = self.kubectl("get", ",".join(names), "-A", "-o", "name", check=False)
            return got.returncode == 0

        self._wait("kube-apiserver", listed, 60)

    def _wait(self, what: str, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log(name)}")
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout}s:\n{self.log(what)}")

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.bins["kubectl"]),
                f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def stop(self) -> None:
        # One at a time, clients first: etcd and kube-apiserver stopped together wait on each
        # other's connections for ~20 s; in order the whole plane stops in a fraction of a second.
        for proc in reversed(list(self.procs.values())):
            stop_process(proc)


def write_kubeconfig(
    path: Path, server: str, ca: Path, token: str, namespace: str = "default"
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "user", "user": {"token": token}}],
        "contexts": [
            {
                "name": "local",
                "context": {"cluster": "local", "user": "user", "namespace": namespace},
            }
        ],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))


FAKE_NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "kwok-node-0",
        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        "labels": {
            "type": "kwok",
            "kubernetes.io/hostname": "kwok-node-0",
            "kubernetes.io/os": "linux",
        },
    },
    "spec": {},
    "status": {
        # Room for the operator's default requests (runtime: 500m, 1Gi) on every pod of the
        # largest benchmark round (500 ModelServices): kwok runs nothing, so it costs nothing.
        "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "1000"},
        "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "1000"},
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake"},
    },
}
