"""The pod's own service account: where the API server is and the token to present.

Only the in-cluster form is read: the trainer and the runtime run in pods, and the tests give
them the same files (a real service-account token from the TokenRequest API) through
`MODELKUBE_SERVICEACCOUNT_DIR`.
"""

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ClusterCredentialsError(Exception):
    """No usable service account here; the message is one line for the user."""


@dataclass(frozen=True)
class InCluster:
    server: str
    token_file: Path
    ca_file: Path
    namespace: str

    def token(self) -> str:
        # Projected tokens rotate: read the file on every use, never cache it.
        return self.token_file.read_text().strip()


def in_cluster() -> InCluster:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    sa_dir = Path(os.environ.get("MODELKUBE_SERVICEACCOUNT_DIR", str(DEFAULT_SA_DIR)))
    if not host:
        raise ClusterCredentialsError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    if not (sa_dir / "token").is_file():
        raise ClusterCredentialsError(f"no service account token at {sa_dir / 'token'}")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    bracketed = f"[{host}]" if ":" in host else host
    return InCluster(
        server=f"https://{bracketed}:{port}",
        token_file=sa_dir / "token",
        ca_file=sa_dir / "ca.crt",
        namespace=(sa_dir / "namespace").read_text().strip(),
    )
