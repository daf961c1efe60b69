"""Where the API server is and how to authenticate: in-cluster, or from a kubeconfig.

The operator, the runtime's fine-tuning API and the trainer's status reporter all read their
credentials here. A pod's service-account token is a projected token that the kubelet
rotates, so it is kept as a file and read again on every use, never cached.
`MODELKUBE_SERVICEACCOUNT_DIR` moves the service-account directory (the tests give processes
a real token from the TokenRequest API that way).
"""

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SA_DIR_ENV = "MODELKUBE_SERVICEACCOUNT_DIR"


class CredentialsError(Exception):
    """No usable credentials here; the message is one line for the user."""


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    namespace: str = "default"
    static_token: str | None = None  # a kubeconfig's `token`: it wins over `tokenFile`
    token_file: str | None = None  # read on every use: projected tokens rotate

    @property
    def token(self) -> str | None:
        """The bearer token to present now (None: authenticate with a client certificate)."""
        if self.static_token is None and self.token_file is not None:
            return Path(self.token_file).read_text().strip()
        return self.static_token


def server_url(host: str, port: str) -> str:
    """`https://host:port`, with an IPv6 address in brackets as URLs need it."""
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"https://{bracketed}:{port}"


def service_account_dir() -> Path:
    return Path(os.environ.get(SA_DIR_ENV) or DEFAULT_SA_DIR)


def in_cluster() -> Credentials:
    """The pod's own service account, or CredentialsError saying what is missing."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        raise CredentialsError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    sa_dir = service_account_dir()
    token, ca, namespace = sa_dir / "token", sa_dir / "ca.crt", sa_dir / "namespace"
    if not token.is_file():
        raise CredentialsError(f"no service account token at {token}")
    if not ca.is_file():
        raise CredentialsError(f"no CA certificate at {ca}")
    if not namespace.is_file():
        raise CredentialsError(f"no namespace file at {namespace}")
    return Credentials(
        server=server_url(host, os.environ.get("KUBERNETES_SERVICE_PORT", "443")),
        ca_file=str(ca),
        token_file=str(token),
        namespace=namespace.read_text().strip(),
    )


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """In a pod its service account, unless a kubeconfig is named; otherwise a kubeconfig
    ($KUBECONFIG's first file, or ~/.kube/config)."""
    if (
        kubeconfig is None
        and os.environ.get("KUBERNETES_SERVICE_HOST")
        and (service_account_dir() / "token").exists()
    ):
        return in_cluster()
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        config: dict[str, Any] = yaml.safe_load(Path(path.split(os.pathsep)[0]).read_text())
    except OSError as exc:
        raise CredentialsError(
            f"no in-cluster service account and no kubeconfig at {path}"
        ) from exc
    return from_kubeconfig(config)


def _named(items: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            entry: dict[str, Any] = item[what]
            return entry
    raise CredentialsError(f"kubeconfig has no {what} named {name!r}")


def from_kubeconfig(config: dict[str, Any]) -> Credentials:
    """The current context's cluster and user."""
    context = _named(config.get("contexts", []), config.get("current-context", ""), "context")
    cluster = _named(config.get("clusters", []), context["cluster"], "cluster")
    user = _named(config.get("users", []), context["user"], "user")
    return Credentials(
        server=cluster["server"],
        ca_file=_file(cluster, "certificate-authority"),
        cert_file=_file(user, "client-certificate"),
        key_file=_file(user, "client-key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=context.get("namespace", "default"),
        static_token=user.get("token"),
        token_file=user.get("tokenFile"),
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
