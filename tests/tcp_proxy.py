"""A TCP proxy a test controls: put it between the app and Redis, then cut the line.

    proxy = TcpProxy(("127.0.0.1", 6379)).start()     # listens on proxy.port
    proxy.partition()   # drop every open connection and refuse new ones (RST): a partition
    proxy.heal()        # accept and forward again
    proxy.close()

Threads, one pair per connection; `partition(refuse=False)` black-holes instead (accepts, never
forwards, so clients time out).
"""

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self._listener = socket.create_server((host, port), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._mode = "forward"  # or "refuse", "blackhole"
        self._closed = False
        self.accepted = 0

    def start(self) -> "TcpProxy":
        threading.Thread(target=self._accept_loop, name=f"tcp-proxy-{self.port}", daemon=True).start()
        return self

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def partition(self, refuse: bool = True) -> None:
        with self._lock:
            self._mode = "refuse" if refuse else "blackhole"
            sockets, self._open = self._open, set()
        for sock in sockets:
            _reset(sock)

    def heal(self) -> None:
        with self._lock:
            self._mode = "forward"

    def close(self) -> None:
        self._closed = True
        self.partition()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == "refuse":
                _reset(client)
                continue
            if mode == "blackhole":
                with self._lock:
                    self._open.add(client)  # held open, never answered; dropped at heal or close
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                _reset(client)
                continue
            self.accepted += 1
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with self._lock:
                    self._open.discard(sock)
                _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the peer sees the connection die now, not a clean EOF."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()
