"""A throwaway ``redis-server`` on 127.0.0.1, for tests, the capability matrix and examples.

:class:`RedisServer` starts Debian's ``redis-server`` binary on a free port
with persistence off (``--save '' --appendonly no``) in a temporary folder of
its own, waits until it answers ``PING``, and stops it (and removes the
folder) on :meth:`~RedisServer.stop` or at the end of a ``with`` block.
:func:`shared_redis_url` gives one URL per process: ``TIDAL_REDIS_URL`` when
it is set, else a server started on first use and stopped when the process
exits. Where no ``redis-server`` is installed, both raise
:class:`RedisServerUnavailable`, whose message says how to install it.

>>> try:
...     server = RedisServer().start()
... except RedisServerUnavailable:
...     server = None                      # no redis-server on this machine
>>> if server is not None:
...     with server:
...         assert server.url.startswith("redis://127.0.0.1:")
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from types import TracebackType

__all__ = [
    "INSTALL_HINT", "RedisServer", "RedisServerUnavailable", "find_redis_server", "shared_redis_url",
    "stop_shared_redis_server",
]

#: How to get the server binary (``make test`` runs this).
INSTALL_HINT = "apt-get install redis-server"

#: The environment variable naming a Redis server to use instead of starting one.
URL_VARIABLE = "TIDAL_REDIS_URL"

#: The environment variable naming the ``redis-server`` binary to start.
BINARY_VARIABLE = "TIDAL_REDIS_SERVER"


class RedisServerUnavailable(RuntimeError):
    """No ``redis-server`` could be started here."""


def find_redis_server() -> str | None:
    """The path of the ``redis-server`` binary, or None.

    ``TIDAL_REDIS_SERVER`` names the binary when set (a path that is not an
    executable means there is none); else it is looked up on the PATH and in
    the usual places.
    """
    chosen = os.environ.get(BINARY_VARIABLE)
    if chosen is not None:
        return chosen if os.path.isfile(chosen) and os.access(chosen, os.X_OK) else None
    found = shutil.which("redis-server")
    if found is not None:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 (see the module docs)."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary
        self.port = 0
        self.folder = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        if self._proc is None:
            raise RuntimeError("the Redis server is not running: call start() first")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        """Start the server and wait until it answers; raises RedisServerUnavailable when it cannot."""
        binary = self.binary or find_redis_server()
        if binary is None:
            raise RedisServerUnavailable(f"no redis-server binary is installed (install it with: {INSTALL_HINT})")
        last_log = ""
        for _ in range(3):  # another process may take the free port before the server binds it
            self.folder = tempfile.mkdtemp(prefix="tidal-redis-")
            self.port = _free_port()
            log = os.path.join(self.folder, "redis.log")
            command = [
                binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", self.folder, "--logfile", log, "--daemonize", "no",
            ]
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._proc.poll() is None:
                if _answers_ping(self.port):
                    return self
                time.sleep(0.02)
            last_log = self._log_tail(log)
            self.stop()
        raise RedisServerUnavailable(f"{binary} did not start answering on 127.0.0.1 within {timeout:g} s: {last_log}")

    @staticmethod
    def _log_tail(path: str) -> str:
        try:
            with open(path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-3:]) or "(its log is empty)"
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its folder."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "RedisServer":
        return self if self.running else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


_shared: RedisServer | None = None
_shared_lock = threading.Lock()


def shared_redis_url() -> str:
    """``TIDAL_REDIS_URL`` when set, else the URL of this process's own server (started once, stopped at exit)."""
    global _shared
    configured = os.environ.get(URL_VARIABLE)
    if configured:
        return configured
    with _shared_lock:
        if _shared is None or not _shared.running:
            server = RedisServer().start()
            atexit.register(server.stop)
            _shared = server
        return _shared.url


def stop_shared_redis_server() -> None:
    """Stop the server :func:`shared_redis_url` started, if any."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.stop()
            _shared = None
