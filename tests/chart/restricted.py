"""Pod Security Standard "restricted", plus a read-only root filesystem: one checker for every
pod we ship, the chart's and the operator's.

https://kubernetes.io/docs/concepts/security/pod-security-standards/ (restricted profile,
which includes baseline).
"""

from typing import Any

_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SECCOMP = {"RuntimeDefault", "Localhost"}


def violations(pod: dict[str, Any]) -> list[str]:
    """What in this pod spec breaks "restricted" (or leaves the root filesystem writable)."""
    found = [
        f"hostNetwork/PID/IPC: {k}" for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)
    ]
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _VOLUME_TYPES:
            found.append(f"volume {volume['name']}: {', '.join(sorted(kinds - _VOLUME_TYPES))}")
    pod_context = pod.get("securityContext", {})
    if pod_context.get("runAsUser") == 0:
        found.append("pod runs as uid 0")
    containers = [*pod.get("initContainers", []), *pod.get("containers", [])]
    for container in containers:
        found += [f"{container['name']}: {v}" for v in _container(container, pod_context)]
    return found


def _container(container: dict[str, Any], pod_context: dict[str, Any]) -> list[str]:
    context = container.get("securityContext", {})
    merged = {**pod_context, **context}
    found = []
    if context.get("privileged"):
        found.append("privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation is not false")
    if merged.get("runAsNonRoot") is not True:
        found.append("runAsNonRoot is not true")
    if merged.get("runAsUser") == 0:
        found.append("runs as uid 0")
    if merged.get("seccompProfile", {}).get("type") not in _SECCOMP:
        found.append("seccompProfile is not RuntimeDefault or Localhost")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        found.append("capabilities do not drop ALL")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
        found.append(f"capabilities add {capabilities['add']}")
    if context.get("readOnlyRootFilesystem") is not True:
        found.append("root filesystem is writable")
    if any(port.get("hostPort") for port in container.get("ports", [])):
        found.append("hostPort")
    return found
