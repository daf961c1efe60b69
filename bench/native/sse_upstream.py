"""`python -m bench.native.sse_upstream PORT CHUNKS`: an upstream that answers every POST with
a stream of CHUNKS server-sent events, one write 2 ms apart (so each arrives on its own, as
tokens do, and a reader crosses into Python once per chunk). bench.native.relay reads it."""

import asyncio
import sys

import uvloop

GAP_S = 0.002


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: int) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            for i in range(chunks):
                frame = b'data: {"i": %d}\n\n' % i
                writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                await writer.drain()
                await asyncio.sleep(GAP_S)
            writer.write(b"0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, RuntimeError):  # the reader left
        writer.close()


async def _serve(port: int, chunks: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _answer(r, w, chunks), "127.0.0.1", port, backlog=1024
    )
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(_serve(int(sys.argv[1]), int(sys.argv[2])))
