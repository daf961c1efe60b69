"""The TLS between kube-apiserver and the kubelets, as a real cluster has it.

`kubectl logs`, `exec` and `port-forward` go through the API server to the node's kubelet: the
API server dials the node's InternalIP, checks the kubelet's serving certificate against a CA,
and presents a client certificate that the kubelet checks against the same CA before asking
the API server (a SubjectAccessReview) whether that user may. One CA per control plane, made
with openssl, signs both sides.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

# The API server's identity at the kubelet; system:masters may use every kubelet API.
APISERVER_CLIENT = "/O=system:masters/CN=kube-apiserver-kubelet-client"


@dataclass(frozen=True)
class KubeletPki:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def client(self) -> tuple[Path, Path]:
        return self.directory / "apiserver-client.crt", self.directory / "apiserver-client.key"

    def apiserver_args(self) -> list[str]:
        cert, key = self.client
        return [
            f"--kubelet-client-certificate={cert}",
            f"--kubelet-client-key={key}",
            f"--kubelet-certificate-authority={self.ca}",
            # A node's Hostname address resolves nowhere here; its InternalIP is where
            # kubelet listens.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]

    def serving(self, ip: str, where: Path) -> tuple[Path, Path]:
        """A kubelet serving certificate for `ip`, signed by the CA: (cert, key)."""
        where.mkdir(parents=True, exist_ok=True)
        return self._issue(where / "kubelet", f"/CN=kubelet-{ip}", "serverAuth", f"IP:{ip}")

    @classmethod
    def make(cls, directory: Path) -> "KubeletPki":
        """A new CA, and the API server's client certificate from it."""
        directory.mkdir(parents=True, exist_ok=True)
        pki = cls(directory)
        _openssl(
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7"),
            *("-subj", "/CN=modelkube-kubelet-ca", "-keyout", str(pki._ca_key)),
            *("-out", str(pki.ca)),
        )
        pki._issue(directory / "apiserver-client", APISERVER_CLIENT, "clientAuth", None)
        return pki

    @property
    def _ca_key(self) -> Path:
        return self.directory / "ca.key"

    def _issue(
        self, stem: Path, subject: str, usage: str, alt_name: str | None
    ) -> tuple[Path, Path]:
        cert, key, csr, ext = (stem.with_suffix(s) for s in (".crt", ".key", ".csr", ".ext"))
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
            *([f"subjectAltName={alt_name}"] if alt_name else []),
        ]
        ext.write_text("\n".join(lines) + "\n")
        _openssl(
            *("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject),
            *("-keyout", str(key), "-out", str(csr)),
        )
        _openssl(
            *("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self._ca_key)),
            *("-CAcreateserial", "-days", "7", "-extfile", str(ext), "-out", str(cert)),
        )
        return cert, key


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)
