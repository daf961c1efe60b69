"""One pooled native HTTP client per pod (the Rust core's, as proxy mode uses), made on
first use. No retries or breaker inside it: the gateway's retry goes to another pod."""

from modelkube_native import UpstreamClient

CONNECT_TIMEOUT_S = 2.0


class Upstreams:
    def __init__(self, response_timeout_s: float) -> None:
        self.response_timeout_s = response_timeout_s
        self._clients: dict[str, UpstreamClient] = {}

    def client(self, endpoint: str) -> UpstreamClient:
        client = self._clients.get(endpoint)
        if client is None:
            client = UpstreamClient(
                f"http://{endpoint}",
                connect_timeout_s=CONNECT_TIMEOUT_S,
                response_timeout_s=self.response_timeout_s,
                max_retries=0,
                breaker_failures=0,
            )
            self._clients[endpoint] = client
        return client

    def keep(self, endpoints: set[str]) -> None:
        """Forgets the clients of pods that are gone (their pools with them)."""
        for endpoint in set(self._clients) - endpoints:
            del self._clients[endpoint]
