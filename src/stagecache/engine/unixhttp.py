"""HTTP/1.1 requests on a local Unix socket: just enough for the few Engine API calls of a cache hit.

The standard library's ``http.client`` does this too, but importing it imports the ``email`` package:
about 25 ms per process on the benchmark machine, a fifth of a whole warm hit. What the engine's
answers need from a client is small: a status line, header lines up to a blank line, and a body sized
by ``Content-Length``, sent in chunks, or ended by the connection (every request here says ``Connection:
close``). A request body, when there is one, is sent in chunks as it is produced.

Anything unexpected on the wire raises :class:`ProtocolError`, an ``OSError``, so a caller that falls
back to another transport on ``OSError`` falls back on a confused answer too.
"""

from __future__ import annotations

import io
from _socket import AF_UNIX, SOCK_STREAM  # the C socket type: see _Socket
from _socket import socket as _Socket  # the ``socket`` module costs 5 ms of imports, for nothing used here
from collections.abc import Iterable, Mapping
from typing import BinaryIO

_MAX_LINE = 65536


class ProtocolError(OSError):
    """The peer's answer is not HTTP/1.x as this client reads it."""


def request(
    socket_path: str,
    method: str,
    target: str,
    *,
    body: Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = 60.0,
) -> tuple[int, bytes]:
    """Send one request to the server on ``socket_path``; returns (status, body).

    ``target`` is the path and query, already quoted. ``timeout`` applies to each socket operation;
    None waits as long as the server works.
    """
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines.append("Transfer-Encoding: chunked")
    elif method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")
    sock = _Socket(AF_UNIX, SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if body is not None:
            for chunk in body:
                if chunk:  # an empty chunk would end the body
                    sock.sendall(b"%x\r\n" % len(chunk))
                    sock.sendall(chunk)
                    sock.sendall(b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        with io.BufferedReader(_SocketReader(sock)) as reader:
            return read_response(reader, head=method == "HEAD")
    finally:
        sock.close()


class _SocketReader(io.RawIOBase):
    """The receiving side of a socket as a raw stream, for ``io.BufferedReader``."""

    def __init__(self, sock: _Socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._sock.recv_into(buffer)


def read_response(reader: BinaryIO, *, head: bool = False) -> tuple[int, bytes]:
    """Read one response (skipping interim 1xx ones) from ``reader``; returns (status, body)."""
    while True:
        status, fields = _read_head(reader)
        if not 100 <= status < 200:
            break
    if head or status in (204, 304):
        return status, b""
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        return status, _read_chunked(reader)
    length = fields.get(b"content-length")
    if length is None:
        return status, reader.read()  # the body ends with the connection
    try:
        size = int(length)
    except ValueError:
        raise ProtocolError(f"bad Content-Length {length!r}") from None
    return status, _read_exactly(reader, size)


def _read_head(reader: BinaryIO) -> tuple[int, dict[bytes, bytes]]:
    parts = _read_line(reader).split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {b' '.join(parts)[:80]!r}")
    fields: dict[bytes, bytes] = {}
    while line := _read_line(reader).strip():
        name, colon, value = line.partition(b":")
        if not colon:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        fields[name.strip().lower()] = value.strip()
    return int(parts[1]), fields


def _read_chunked(reader: BinaryIO) -> bytes:
    parts: list[bytes] = []
    while True:
        size_field = _read_line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_field[:20]!r}") from None
        if size == 0:
            while _read_line(reader).strip():  # trailer fields, unused
                pass
            return b"".join(parts)
        parts.append(_read_exactly(reader, size))
        if _read_line(reader).strip():
            raise ProtocolError("a chunk is longer than its size says")


def _read_line(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if not line:
        raise ProtocolError("the connection closed in the middle of a response")
    if len(line) > _MAX_LINE:
        raise ProtocolError("a line of the response is too long")
    return line


def _read_exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise ProtocolError(f"the response body ended after {len(data)} of {size} bytes")
    return data
