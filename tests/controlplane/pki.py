"""The front proxy's certificates, for the API server's aggregation layer.

kube-apiserver proxies an aggregated API (an APIService, such as prometheus-adapter's
custom.metrics.k8s.io) with a client certificate of its own, and the extension server trusts the
user it names only when that certificate is signed by the request-header CA, which openssl makes
here with the certificate, in the control plane's work directory.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

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
