"""A TCP proxy a test controls, to put between processes and a Redis and cut the line.

    proxy = TcpProxy(("127.0.0.1", redis_port)).start()   # clients connect to proxy.port
    proxy.partition()   # every open connection reset, new ones refused: a partition
    proxy.heal()        # forward again
    proxy.close()

One thread per direction per connection: enough for a test's few dozen connections.
"""

import contextlib
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.partitions = 0

    def start(self) -> "TcpProxy":
        threading.Thread(target=self._accept, name=f"tcp-proxy-{self.port}", daemon=True).start()
        return self

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def partition(self) -> None:
        """Reset every connection through the proxy and refuse new ones until heal()."""
        with self._lock:
            self._cut = True
            self.partitions += 1
            doomed, self._connections = self._connections, set()
        for sock in doomed:
            _reset(sock)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.partition()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                _reset(downstream)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:  # the server itself is down: the client sees what it would see
                _reset(downstream)
                continue
            with self._lock:
                self._connections.update((downstream, upstream))
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._forward, args=(source, sink), daemon=True).start()

    def _forward(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with self._lock:
            self._connections.difference_update((source, sink))
        _reset(source)
        _reset(sink)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer's next read fails now, as when a link drops."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
