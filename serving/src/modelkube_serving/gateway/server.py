"""uvicorn for the gateway: held requests are answered before uvicorn's graceful shutdown.

On SIGTERM uvicorn stops listening, closes idle connections, lets the requests in flight
finish (each answer then closes its connection, so the client's next request goes to another
gateway pod) for `timeout_graceful_shutdown`, and cancels what is left into a 500. A request
held for a model scaling from zero may wait longer than that, so it gets a 503 with
Retry-After at once instead; answers streaming from a pod go on until they end.
"""

import socket
from collections.abc import Callable

import uvicorn


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stop_holding: Callable[[], None]) -> None:
        super().__init__(config)
        self.stop_holding = stop_holding

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stop_holding()
        await super().shutdown(sockets)
