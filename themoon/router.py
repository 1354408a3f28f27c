"""One port for two servers: route each connection by its first request's path (measured option).

    python -m themoon.router --port 8000 --http 127.0.0.1:8001 --ws 127.0.0.1:8002

A connection whose first request targets /ws/ is spliced to the ASGI server, any other to the WSGI
server; the bytes then flow unchanged both ways until either side closes. Routing is per
connection (a browser opens a connection of its own for a WebSocket). The request head must
arrive within 10 s and 16 KiB, or the connection is closed. The servers behind see the router as the
client (no X-Forwarded-For is added): a measured option for one port (bench/http.py `split`), not
the Procfile's topology (README, "Processes").
"""

import argparse
import asyncio
import contextlib

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT = 10.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _upstream_for(head: bytes, http: tuple[str, int], ws: tuple[str, int]) -> tuple[str, int]:
    parts = head.split(b" ", 2)
    return ws if len(parts) > 1 and parts[1].startswith(b"/ws/") else http


async def _serve(reader, writer, http: tuple[str, int], ws: tuple[str, int]) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    host, port = _upstream_for(head, http, ws)
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        writer.close()
        return
    up_writer.write(head)
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main(args: argparse.Namespace) -> None:
    http, ws = _address(args.http), _address(args.ws)
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, http, ws), args.host, args.port, limit=HEAD_LIMIT, backlog=2048
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--http", default="127.0.0.1:8001")
    parser.add_argument("--ws", default="127.0.0.1:8002")
    try:
        import uvloop

        uvloop.run(main(parser.parse_args()))
    except ImportError:
        asyncio.run(main(parser.parse_args()))
