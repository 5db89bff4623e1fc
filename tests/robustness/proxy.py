"""A TCP proxy in front of a database that a test can cut and freeze: the outside world's faults, made real.

- `cut()`   closes every connection and resets new ones: the database was stopped (or restarted).
- `freeze()` keeps every socket open but forwards nothing, in either direction; new connections are
  accepted and then hang: the database (or its host) stopped answering without closing anything, as a
  SIGSTOPped server does (its kernel still completes the TCP handshake).
- `restore()` forwards again; bytes held during a freeze are delivered, as after SIGCONT.
"""
from __future__ import annotations

import socket
import struct
import threading


class FaultProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.port = self._listen.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._cut = False
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    # --- faults ----------------------------------------------------------------------------------------
    def cut(self) -> None:
        with self._lock:
            self._cut = True
            socks, self._socks = self._socks, set()
        for s in socks:
            _reset(s)

    def freeze(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        with self._lock:
            self._cut = False
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._flowing.set()
        self._listen.close()

    # --- plumbing --------------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                _reset(client)
                continue
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        self._flowing.wait()  # frozen: the handshake is done, but nothing answers
        try:
            server = socket.create_connection(self.target, timeout=5)
            server.settimeout(None)
        except OSError:
            _reset(client)
            return
        with self._lock:
            if self._cut:
                _reset(client)
                _reset(server)
                return
            self._socks |= {client, server}
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with self._lock:
                    self._socks.discard(s)
                _reset(s)


def _reset(s: socket.socket) -> None:
    """Close with RST (linger 0), as a killed server's kernel answers; shutdown wakes a blocked recv."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
