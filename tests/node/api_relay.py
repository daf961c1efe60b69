"""The API server, reachable from pods: a TCP relay on the node's bridge address.

The test API server listens on 127.0.0.1 only. Pods reach it the in-cluster way, through the
`kubernetes` Service (10.96.0.1:443): its endpoint is set to this relay, on the node's own
bridge address and the API server's port, which forwards bytes to 127.0.0.1 (TLS passes
through untouched; the API server's certificate already names 10.96.0.1).
"""

import contextlib
import socket
import socketserver
import threading
from typing import Any

import yaml

from tests.controlplane.cluster import ControlPlane


class _Relay(socketserver.BaseRequestHandler):
    upstream: tuple[str, int]

    def handle(self) -> None:
        with socket.create_connection(self.upstream, timeout=10) as upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
            back.start()
            _pipe(self.request, upstream)
            back.join()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ApiRelay:
    def __init__(self, cp: ControlPlane, address: str) -> None:
        handler: Any = type("Relay", (_Relay,), {"upstream": ("127.0.0.1", cp.api_port)})
        self.server = _Server((address, cp.api_port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.cp, self.address = cp, address

    def start(self) -> "ApiRelay":
        self.thread.start()
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes-relay",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "modelkube-tests",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.cp.api_port, "protocol": "TCP"}],
        }
        self.cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(slice_))
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
