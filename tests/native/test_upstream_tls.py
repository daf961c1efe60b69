"""The upstream client over TLS, as to a hosted provider: a throwaway CA (trustme) signs a
loopback server's certificate, which the system's roots do not know and `ca_file` does."""

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from modelkube_native import InvalidArgumentError, UpstreamClient, UpstreamConnectError


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        answer = json.dumps({"echo": body.decode(), "tls": True}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_url(ca: trustme.CA) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def test_a_server_signed_by_an_unknown_ca_is_refused(tls_url: str) -> None:
    client = UpstreamClient(tls_url, max_retries=0)
    with pytest.raises(UpstreamConnectError, match="certificate"):
        client.request("POST", "/chat/completions", b"{}")


def test_the_extra_ca_is_trusted_sync_and_async(tls_url: str, ca_file: Path) -> None:
    client = UpstreamClient(tls_url, ca_file=ca_file)
    answer = client.request("POST", "/chat/completions", b'{"a":1}')
    assert answer.status == 200
    assert json.loads(answer.body) == {"echo": '{"a":1}', "tls": True}

    async def call() -> bytes:
        return (await client.arequest("POST", "/chat/completions", b"async")).body

    assert json.loads(asyncio.run(call()))["echo"] == "async"


def test_a_bad_ca_file_is_an_argument_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(InvalidArgumentError, match="holds no PEM certificate"):
        UpstreamClient("https://127.0.0.1:1/v1", ca_file=garbage)
    with pytest.raises(InvalidArgumentError, match=r"cannot read the CA file .*missing\.pem"):
        UpstreamClient("https://127.0.0.1:1/v1", ca_file=tmp_path / "missing.pem")
