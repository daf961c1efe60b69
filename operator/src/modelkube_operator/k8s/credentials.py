"""Where the API server is and how to authenticate: in-cluster, or from a kubeconfig."""

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class CredentialsError(Exception):
    pass


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_file: str | None = None
    token: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    namespace: str = "default"


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if kubeconfig is None and host and (_SA_DIR / "token").exists():
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        return Credentials(
            server=f"https://{host}:{port}",
            ca_file=str(_SA_DIR / "ca.crt"),
            token=(_SA_DIR / "token").read_text().strip(),
            namespace=(_SA_DIR / "namespace").read_text().strip(),
        )
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        config: dict[str, Any] = yaml.safe_load(Path(path.split(os.pathsep)[0]).read_text())
    except OSError as exc:
        raise CredentialsError(
            f"no in-cluster service account and no kubeconfig at {path}"
        ) from exc
    return _from_kubeconfig(config)


def _named(items: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            entry: dict[str, Any] = item[what]
            return entry
    raise CredentialsError(f"kubeconfig has no {what} named {name!r}")


def _from_kubeconfig(config: dict[str, Any]) -> Credentials:
    context = _named(config.get("contexts", []), config.get("current-context", ""), "context")
    cluster = _named(config.get("clusters", []), context["cluster"], "cluster")
    user = _named(config.get("users", []), context["user"], "user")
    return Credentials(
        server=cluster["server"],
        ca_file=_file(cluster, "certificate-authority"),
        token=user.get("token"),
        cert_file=_file(user, "client-certificate"),
        key_file=_file(user, "client-key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=context.get("namespace", "default"),
    )


def _file(section: dict[str, Any], key: str) -> str | None:
    if key in section:
        return str(section[key])
    data = section.get(f"{key}-data")
    if data is None:
        return None
    handle = tempfile.NamedTemporaryFile(prefix="modelkube-", delete=False)  # noqa: SIM115
    with handle:
        handle.write(base64.b64decode(data))
    return handle.name
