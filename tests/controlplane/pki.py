"""The control plane's certificates, made with openssl in its work directory.

Two trusts a real cluster has:
- Between kube-apiserver and the kubelets. `kubectl logs`, `exec` and `port-forward` go through
  the API server to the node's kubelet: the API server dials the node's InternalIP, checks the
  kubelet's serving certificate against a CA, and presents a client certificate that the kubelet
  checks against the same CA before asking the API server (a SubjectAccessReview) whether that
  user may. One CA per control plane signs both sides.
- The front proxy, for the aggregation layer. kube-apiserver proxies an aggregated API (an
  APIService, such as prometheus-adapter's custom.metrics.k8s.io) with a client certificate of
  its own, and the extension server trusts the user it names only when that certificate is
  signed by the request-header CA.
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


# What kube-apiserver's proxy client is called; extension servers accept only these names.
FRONT_PROXY_CLIENT = "front-proxy-client"


@dataclass(frozen=True)
class FrontProxy:
    ca: Path
    cert: Path
    key: Path


def write_front_proxy(directory: Path) -> FrontProxy:
    directory.mkdir(parents=True, exist_ok=True)
    pki = FrontProxy(
        directory / "front-proxy-ca.crt",
        directory / "front-proxy-client.crt",
        directory / "front-proxy-client.key",
    )
    ca_key = directory / "front-proxy-ca.key"
    request = directory / "front-proxy-client.csr"
    extensions = directory / "front-proxy-client.ext"
    extensions.write_text("extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n")
    # EC keys: RSA key generation is the slow part of openssl, and the cluster starts often.
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_subject, client_subject = "/CN=front-proxy-ca", f"/CN={FRONT_PROXY_CLIENT}"
    for command in (
        ["req", "-x509", *new_key, "-keyout", ca_key, "-out", pki.ca, "-subj", ca_subject],
        ["req", *new_key, "-keyout", pki.key, "-out", request, "-subj", client_subject],
        [
            "x509",
            "-req",
            "-in",
            request,
            "-CA",
            pki.ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            pki.cert,
            "-extfile",
            extensions,
        ],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return pki
