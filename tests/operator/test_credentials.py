"""Credentials for the one Kubernetes client: in-cluster or from a kubeconfig."""

import base64
import os
from pathlib import Path

import pytest
import yaml
from modelkube_operator.k8s.credentials import (
    CredentialsError,
    in_cluster,
    load_credentials,
    server_url,
)
from yarl import URL

IN_CLUSTER_ENV = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG")


@pytest.fixture
def sa_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pod's service-account directory, laid out as the kubelet projects it: the files are
    links through `..data`, which the kubelet swaps atomically to rotate the token."""
    for name in IN_CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("MODELKUBE_SERVICEACCOUNT_DIR", str(tmp_path))
    project(tmp_path, "first", token="token-1\n")
    for name in ("token", "ca.crt", "namespace"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    return tmp_path


def project(sa_dir: Path, version: str, token: str) -> None:
    """What the kubelet does to update a projected volume: a new directory, then `..data`
    repointed at it in one rename."""
    target = sa_dir / f"..{version}"
    target.mkdir()
    (target / "token").write_text(token)
    (target / "ca.crt").write_text("PEM")
    (target / "namespace").write_text("team-a")
    (sa_dir / "..data_tmp").symlink_to(target.name)
    os.replace(sa_dir / "..data_tmp", sa_dir / "..data")


def test_a_rotated_token_is_read_again(sa_dir: Path) -> None:
    creds = in_cluster()
    assert creds.token == "token-1"
    project(sa_dir, "second", token="token-2\n")
    assert creds.token == "token-2"


def test_in_cluster_reads_the_service_account(sa_dir: Path) -> None:
    creds = in_cluster()
    assert creds.server == "https://10.96.0.1:443"
    assert creds.ca_file == str(sa_dir / "ca.crt")
    assert creds.namespace == "team-a"
    assert (creds.cert_file, creds.key_file, creds.insecure) == (None, None, False)


@pytest.mark.parametrize(
    ("host", "port", "server", "parsed_host"),
    [
        ("10.96.0.1", "443", "https://10.96.0.1:443", "10.96.0.1"),
        ("fd00:10:96::1", "443", "https://[fd00:10:96::1]:443", "fd00:10:96::1"),
        ("::1", "6443", "https://[::1]:6443", "::1"),
        ("[fd00::1]", "443", "https://[fd00::1]:443", "fd00::1"),
        ("kubernetes.default.svc", "443", "https://kubernetes.default.svc:443", None),
    ],
)
def test_an_ipv6_service_host_is_bracketed(
    sa_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    port: str,
    server: str,
    parsed_host: str | None,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    creds = in_cluster()
    assert creds.server == server == server_url(host, port)
    url = URL(creds.server)  # as the client's HTTP stack parses it
    assert url.port == int(port)
    assert url.host == (parsed_host or host)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("token", "no service account token at"),
        ("ca.crt", "no CA certificate at"),
        ("namespace", "no namespace file at"),
    ],
)
def test_what_in_cluster_lacks_is_named(sa_dir: Path, missing: str, message: str) -> None:
    (sa_dir / missing).unlink()
    with pytest.raises(CredentialsError, match=message):
        in_cluster()


def test_in_cluster_needs_the_service_host(sa_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(CredentialsError, match="KUBERNETES_SERVICE_HOST is not set"):
        in_cluster()


def kubeconfig(path: Path, user: dict[str, str], namespace: str = "dev") -> Path:
    config = {
        "clusters": [
            {"name": "other", "cluster": {"server": "https://wrong:1"}},
            {
                "name": "local",
                "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": "/ca"},
            },
        ],
        "users": [{"name": "me", "user": user}],
        "contexts": [
            {"name": "c", "context": {"cluster": "local", "user": "me", "namespace": namespace}}
        ],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_in_a_pod_the_service_account_wins_over_kubeconfig(
    sa_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = kubeconfig(tmp_path / "config", {"token": "from-kubeconfig"})
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert load_credentials().token == "token-1"
    # ... unless a kubeconfig is named explicitly.
    explicit = load_credentials(str(config))
    assert (explicit.server, explicit.token) == ("https://127.0.0.1:6443", "from-kubeconfig")


def test_outside_a_pod_kubeconfig_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IN_CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)
    config = kubeconfig(tmp_path / "config", {"token": "t"})
    monkeypatch.setenv("KUBECONFIG", f"{config}{os.pathsep}{tmp_path / 'second'}")
    creds = load_credentials()
    assert (creds.server, creds.ca_file, creds.namespace) == (
        "https://127.0.0.1:6443",
        "/ca",
        "dev",
    )
    assert creds.token == "t"


def test_a_kubeconfig_token_file_is_read_per_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    token = tmp_path / "token"
    token.write_text("one\n")
    creds = load_credentials(str(kubeconfig(tmp_path / "config", {"tokenFile": str(token)})))
    assert creds.token == "one"
    token.write_text("two\n")
    assert creds.token == "two"
    # kubectl's rule: a literal token wins over tokenFile.
    both = {"token": "literal", "tokenFile": str(token)}
    assert load_credentials(str(kubeconfig(tmp_path / "both", both))).token == "literal"


def test_kubeconfig_client_certificates_embedded_as_data(tmp_path: Path) -> None:
    user = {
        "client-certificate-data": base64.b64encode(b"CERT").decode(),
        "client-key-data": base64.b64encode(b"KEY").decode(),
    }
    creds = load_credentials(str(kubeconfig(tmp_path / "config", user)))
    assert creds.token is None
    assert creds.cert_file is not None and creds.key_file is not None
    assert Path(creds.cert_file).read_bytes() == b"CERT"
    assert Path(creds.key_file).read_bytes() == b"KEY"
    Path(creds.cert_file).unlink()
    Path(creds.key_file).unlink()


def test_no_credentials_at_all_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(CredentialsError, match="no in-cluster service account and no kubeconfig"):
        load_credentials()
