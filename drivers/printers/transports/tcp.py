"""Raw TCP ("port 9100", JetDirect style) transport.

URI grammar: ``tcp://HOST[:PORT][?timeout=SECONDS&drain=SECONDS]``

- PORT defaults to 9100; HOST may be a name, IPv4 or ``[IPv6]``.
- ``timeout`` (default 10): connect timeout, and the most sending a job may
  take (a printer out of paper shuts its receive window): then the job is
  given up (``PrintTimeout``: outcome unknown).
- ``drain`` (default 2): after sending, how long to wait (in all) for the
  printer to close its side, which confirms it read everything.

Each job and each status query uses its own connection: a printer that was
power-cycled since the last job is simply reached again, and a stale socket
can never swallow a job.
"""

from __future__ import annotations

import socket
import time

from drivers.errors import PrinterConfigError, PrinterUnavailable, PrintInterrupted, PrintTimeout

from .base import parse_options, positive_float, split_uri

__all__ = ["TcpTransport"]

GRAMMAR = "tcp://HOST[:PORT][?timeout=SECONDS&drain=SECONDS]"


class TcpTransport:
    def __init__(self, uri: str) -> None:
        parts = split_uri(uri, "tcp", GRAMMAR)
        if parts.path not in ("", "/") or parts.username or parts.password:
            raise PrinterConfigError(f"bad printer URI {uri!r}; expected {GRAMMAR}")
        try:
            port = parts.port or 9100
        except ValueError as exc:
            raise PrinterConfigError(f"bad port in {uri!r}; expected {GRAMMAR}") from exc
        if not parts.hostname:
            raise PrinterConfigError(f"no host in {uri!r}; expected {GRAMMAR}")
        opts = parse_options(parts, {"timeout": positive_float, "drain": positive_float}, GRAMMAR)
        self.uri = uri
        self.host: str = parts.hostname
        self.port: int = port
        self.timeout_s = opts.get("timeout", 10.0)
        self.drain_s = opts.get("drain", 2.0)

    def _connect(self, timeout_s: float) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=timeout_s)
        except OSError as exc:
            raise PrinterUnavailable(
                f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc

    def write(self, data: bytes, *, job_id: str = "") -> None:
        sock = self._connect(self.timeout_s)
        try:
            try:
                sock.sendall(data)  # the socket timeout bounds the whole send
                sock.shutdown(socket.SHUT_WR)
            except TimeoutError as exc:
                raise PrintTimeout(
                    f"{self.host}:{self.port} did not take the job within {self.timeout_s:g} s"
                ) from exc
            except OSError as exc:
                raise PrintInterrupted(f"connection to {self.host}:{self.port} broke while sending") from exc
            drained_by = time.monotonic() + self.drain_s
            try:
                # Anything the printer sends back (ASB status) is ignored; EOF
                # means it read the whole job and closed cleanly. A printer that
                # keeps talking is not waited for past `drain` in all.
                while (left := drained_by - time.monotonic()) > 0:
                    sock.settimeout(left)
                    if not sock.recv(4096):
                        break
            except TimeoutError:
                pass  # many printers keep the connection open: the data is sent
            except OSError as exc:
                # A reset after sending can mean the printer dropped unread data.
                raise PrintInterrupted(f"connection to {self.host}:{self.port} was reset") from exc
        finally:
            sock.close()

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        sock = self._connect(min(timeout_s, self.timeout_s))
        try:
            sock.settimeout(timeout_s)
            sock.sendall(request)
            reply = sock.recv(64)
            return reply or None
        except TimeoutError:
            return None
        except OSError:
            return None
        finally:
            sock.close()

    def close(self) -> None:
        """Nothing is held between calls."""
