"""One real node for the test control plane: containerd, runc, CNI bridge, kubelet, kube-proxy,
CoreDNS.

Tests marked `real_node` use it: it needs root, Debian's containerd, runc, containernetworking-
plugins, conntrack, iptables, busybox-static, gcc and mmdebstrap (`make test` installs them), and
kubelet and kube-proxy built from their Go module. Everything lives under the node's work directory
(containerd's root, state and socket, runc's root, the pods' network namespaces, kubelet's root and
pod logs), except what the machine has only one of: the CNI bridge the harness makes itself (a
private range), kubelet's /kubepods cgroups, kubelet's and kube-proxy's KUBE-* iptables chains, and
ip_forward (the bridge plugin turns it on); `stop()` puts all of them back.

Settings this machine needs (see shared notes): cgroup v1, so kubelet runs with
`cgroupDriver: cgroupfs` and `failCgroupV1: false`, and containerd with `SystemdCgroup = false`;
no CAP_SYS_RESOURCE, so containerd must `restrict_oom_score_adj`; no IP_VS, so kube-proxy runs
in iptables mode; no dummy interfaces, so the node's IP is the bridge's own address.
"""

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.controlplane.binaries import COREDNS_MODULE, NODE_MODULE, ensure_binaries
from tests.controlplane.cluster import ControlPlane, write_kubeconfig
from tests.node.api_relay import ApiRelay
from tests.node.images import PAUSE_IMAGE, busybox_archive, pause_archive
from tests.processes import stop_process
from tests.serving.runtime_process import free_port

NODE_NAME = "real-node-0"
BRIDGE = "mkcni0"
# The pods' range, on a bridge the harness makes; the node's IP is the gateway.
POD_SUBNET = "10.213.0.0/24"
NODE_IP = "10.213.0.1"
CNI_BIN = Path("/usr/lib/cni")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
BUSYBOX = Path("/usr/bin/busybox")
CLUSTER_DOMAIN = "cluster.local"


@dataclass
class RealNode:
    workdir: Path
    control_plane: ControlPlane
    bins: dict[str, Path] = field(
        default_factory=lambda: ensure_binaries((NODE_MODULE, COREDNS_MODULE))
    )
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The CNI bridge plugin turns forwarding on; stop() puts back what the machine had.
    ip_forward: str = field(default_factory=lambda: IP_FORWARD.read_text())
    relay: ApiRelay | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def start(self, timeout: float = 120) -> "RealNode":
        try:
            self._start_all(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _make_bridge()
        self._write_cni()
        self._start("containerd", ["containerd", f"--config={self._write_containerd()}"])
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, 30)
        self._import_images()
        kubeconfig = self.workdir / "kubelet.kubeconfig"
        cp = self.control_plane
        # The admin credential, for this first step (RBAC has no Node authorizer here).
        write_kubeconfig(kubeconfig, cp.server, cp.ca_file, cp.admin_token)
        self._start(
            "coredns", [str(self.bins["coredns"]), "-conf", str(self._write_corefile(kubeconfig))]
        )
        self._wait("coredns", lambda: "CoreDNS-" in self.log("coredns"), 30)
        self._start(
            "kubelet",
            [
                str(self.bins["kubelet"]),
                f"--config={self._write_kubelet_config()}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                # kubelet's minute-by-minute container GC keeps one non-running instance per
                # container, and a restarted container counts from CreateContainer on: a GC
                # run in the ~50 ms before it starts removed the dead one, and with it the
                # log `kubectl logs --previous` reads (seen twice, in CI and here). Two kept:
                # the dead one survives that window. (Deprecated flag; no config field yet.)
                "--maximum-dead-containers-per-container=2",
                "--v=2",
            ],
        )
        self._wait("kubelet", self._ready, timeout)
        self._start(
            "kube-proxy",
            [
                str(self.bins["kube-proxy"]),
                f"--config={self._write_proxy_config(kubeconfig)}",
                f"--hostname-override={NODE_NAME}",
            ],
        )
        # Its first sync writes KUBE-SERVICES; until then a ClusterIP goes nowhere.
        self._wait("kube-proxy", lambda: _chain_exists("nat", "KUBE-SERVICES"), 30)
        # Pods reach the API server in-cluster (the operator's pod, helm test's).
        self.relay = ApiRelay(self.control_plane, NODE_IP).start()

    def _ready(self) -> bool:
        result = self.control_plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _write_cni(self) -> None:
        conf_dir = self.workdir / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "cniVersion": "1.0.0",
            "name": "modelkube",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP}]],
                        # A default route via the node: ClusterIPs (the API server's too)
                        # are outside the pods' subnet.
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf_dir / "10-modelkube.conflist").write_text(json.dumps(config, indent=2))

    def _write_containerd(self) -> Path:
        base = self.workdir / "containerd"
        base.mkdir(parents=True, exist_ok=True)
        cri = "io.containerd.grpc.v1.cri"
        config = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{base / "containerd.ttrpc.sock"}"

[plugins."{cri}"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj is refused.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false

[plugins."{cri}".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."{cri}".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."{cri}".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{base / "runc"}"

[plugins."{cri}".cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{self.workdir / "cni" / "net.d"}"
"""
        path = base / "config.toml"
        path.write_text(config)
        return path

    def _write_kubelet_config(self) -> Path:
        pki = self.control_plane.kubelet_pki
        cert, key = pki.serving(NODE_IP, self.workdir / "kubelet-pki")
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # cgroup v1 on this machine, and no systemd.
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            # Where the API server dials for `kubectl logs`/`exec` (the node's InternalIP, on
            # the harness's bridge), with a certificate from the control plane's kubelet CA.
            "address": NODE_IP,
            "port": free_port(),
            "tlsCertFile": str(cert),
            "tlsPrivateKeyFile": str(key),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            # Only clients with a certificate from that CA (the API server), each request
            # authorized by the API server (a SubjectAccessReview), as a real cluster does.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki.ca)},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.workdir / "pod-logs"),
            "registerNode": True,
            # CoreDNS on the node's bridge address: Services resolve by name.
            "clusterDNS": [NODE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "serializeImagePulls": False,
            # A mounted ConfigMap's change reaches the pod at the next pod sync (the default
            # period is 1 minute, which the adapter handoff tests waited out); 10 s here.
            "syncFrequency": "10s",
            # The disk is shared with other work: do not taint the node over it.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _write_corefile(self, kubeconfig: Path) -> Path:
        """The cluster's zone from the API server, on the bridge address only; nothing else."""
        corefile = f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{
    bind {NODE_IP}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
    }}
}}
"""
        path = self.workdir / "Corefile"
        path.write_text(corefile)
        return path

    def _write_proxy_config(self, kubeconfig: Path) -> Path:
        config: dict[str, Any] = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            # IP_VS is not built into this kernel.
            "mode": "iptables",
            "clusterCIDR": POD_SUBNET,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # NodePorts on the bridge only: not on the machine's own interface, nor on
            # localhost (which would need route_localnet).
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # Leave the machine's conntrack sysctls alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _import_images(self) -> None:
        images = self.workdir / "images"
        images.mkdir(exist_ok=True)
        module = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
            cwd=NODE_MODULE.path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archives = (
            pause_archive(Path(module) / "build/pause/linux/pause.c", images),
            busybox_archive(BUSYBOX, images),
        )
        for archive in archives:
            self.import_image(archive)

    def import_image(self, archive: Path) -> None:
        """Import (and unpack) an OCI archive where kubelet finds it: no registry here."""
        self.ctr("images", "import", str(archive))

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["ctr", f"--address={self.socket}", "--namespace=k8s.io", *args]
        # An import unpacks the whole image (the runtime's is ~2 GB unpacked).
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=600)

    def _start(self, name: str, command: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(command, stdout=log, stderr=log)

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
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop kubelet, the pods' containers, containerd; remove mounts, cgroups and bridge."""
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        proxy = self.procs.pop("kube-proxy", None)
        if proxy is not None:
            stop_process(proxy)
        for name in ("kubelet", "coredns"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc)
        runc_root = self.workdir / "containerd" / "runc" / "k8s.io"
        if runc_root.exists():
            listed = subprocess.run(
                ["runc", f"--root={runc_root}", "list", "-q"], capture_output=True, text=True
            )
            for container in listed.stdout.split():
                subprocess.run(
                    ["runc", f"--root={runc_root}", "delete", "--force", container],
                    capture_output=True,
                )
        containerd = self.procs.pop("containerd", None)
        if containerd is not None:
            stop_process(containerd)
        _kill_shims(self.socket)
        _unmount_under(self.workdir)
        _remove_cgroups("kubepods")
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        _remove_kube_chains()
        IP_FORWARD.write_text(self.ip_forward)


# Each with the Debian package that brings it (`make system-deps` installs them as root).
TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "gcc": "gcc",
    "mmdebstrap": "mmdebstrap",
    "unshare": "util-linux",
}


def why_no_containers() -> str | None:
    """Why this machine cannot run the real node, found by trying; None when it can."""
    if os.geteuid() != 0:
        return "not root (containerd, runc and the CNI bridge need root)"
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    missing += [
        p.name for p in (CNI_BIN / "bridge", CNI_BIN / "host-local", BUSYBOX) if not p.exists()
    ]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install them, or run `make test` as root)"
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot make namespaces: {probe.stderr.strip()}"
    return _why_no_cgroup()


def _why_no_cgroup() -> str | None:
    """A child cgroup with a memory limit: what runc makes for every container."""
    v1 = Path("/sys/fs/cgroup/memory")
    parent = v1 if v1.is_dir() else Path("/sys/fs/cgroup")
    limit = "memory.limit_in_bytes" if v1.is_dir() else "memory.max"
    probe = parent / f"modelkube-probe-{os.getpid()}"
    try:
        probe.mkdir()
        try:
            (probe / limit).write_text("67108864")
        finally:
            probe.rmdir()
    except OSError as error:
        return f"cannot make a memory-limited cgroup under {parent}: {error}"
    return None


def _make_bridge() -> None:
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)  # a previous run's
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    prefix = POD_SUBNET.split("/")[1]
    subprocess.run(["ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)


def _kill_shims(socket: Path) -> None:
    """The runc shims of this containerd (they outlive it): found by their -address argument."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), 9)


def _unmount_under(root: Path) -> None:
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    points = [line.split()[4] for line in mounts]
    for point in reversed(points):
        if point.startswith(f"{root}/"):
            subprocess.run(["umount", "-l", point], capture_output=True)


def _chain_exists(table: str, chain: str) -> bool:
    listed = subprocess.run(["iptables", "-t", table, "-S", chain], capture_output=True)
    return listed.returncode == 0


def _remove_kube_chains() -> None:
    """kubelet's and kube-proxy's KUBE-* iptables chains, and the jumps to them."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listed = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True)
            rules = listed.stdout.splitlines()
            for rule in rules:
                words = shlex.split(rule)  # comments are quoted, with spaces
                if words[0] == "-A" and "KUBE-" in rule and not words[1].startswith("KUBE-"):
                    subprocess.run([tool, "-t", table, "-D", *words[1:]], capture_output=True)
            chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
            for flag in ("-F", "-X"):
                for chain in chains:
                    subprocess.run([tool, "-t", table, flag, chain], capture_output=True)


def _remove_cgroups(name: str) -> None:
    """Remove kubelet's cgroup tree in every v1 hierarchy, deepest first."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        inner = [p for p in top.rglob("*") if p.is_dir()]
        for directory in [*sorted(inner, key=lambda p: len(p.parts), reverse=True), top]:
            with contextlib.suppress(OSError):  # busy: a process still in it
                directory.rmdir()
