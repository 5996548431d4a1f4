"""The Unix-socket HTTP client against a real HTTP server on a Unix socket (the standard library's)."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from stagecache.engine import unixhttp


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # a Unix socket has no client address
        return "local"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        routes: dict[str, Callable[[], None]] = {
            "/sized": self._sized,
            "/chunked": self._chunked,
            "/until-close": self._until_close,
            "/empty": self._empty,
            "/truncated": self._truncated,
            "/garbage": self._garbage,
        }
        routes[self.path]()

    def do_POST(self) -> None:
        assert self.headers["Transfer-Encoding"] == "chunked"
        received = b""
        while True:
            size = int(self.rfile.readline().strip(), 16)
            if size == 0:
                self.rfile.readline()
                break
            received += self.rfile.read(size)
            self.rfile.readline()
        body = f"{self.headers['Content-Type']} {len(received)} {received[:5].decode()}".encode()
        self._send(201, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _sized(self) -> None:
        self._send(200, b'{"Id": "sha256:abc"}')

    def _chunked(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"hello ", b"chunked ", b"world"):
            self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")

    def _until_close(self) -> None:
        self.send_response(404)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"no such image")
        self.close_connection = True

    def _empty(self) -> None:
        self.send_response(204)
        self.end_headers()

    def _truncated(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"short")
        self.close_connection = True

    def _garbage(self) -> None:
        self.wfile.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        self.close_connection = True


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "api.sock")
    with _Server(path, _Handler) as srv:
        thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield path
        finally:
            srv.shutdown()


def test_body_sized_by_content_length(server: str) -> None:
    assert unixhttp.request(server, "GET", "/sized") == (200, b'{"Id": "sha256:abc"}')


def test_chunked_body_with_extensions_and_trailers(server: str) -> None:
    assert unixhttp.request(server, "GET", "/chunked") == (200, b"hello chunked world")


def test_body_ended_by_the_connection(server: str) -> None:
    assert unixhttp.request(server, "GET", "/until-close") == (404, b"no such image")


def test_no_content(server: str) -> None:
    assert unixhttp.request(server, "GET", "/empty") == (204, b"")


def test_request_body_is_sent_in_chunks(server: str) -> None:
    parts = [b"abc", b"", b"de" * 40_000]  # an empty part must not end the body early
    status, body = unixhttp.request(
        server, "POST", "/load", body=iter(parts), headers={"Content-Type": "application/x-tar"}
    )
    assert (status, body) == (201, b"application/x-tar 80003 abcde")


def test_truncated_body_is_an_error(server: str) -> None:
    with pytest.raises(unixhttp.ProtocolError, match="ended after 5 of 100 bytes"):
        unixhttp.request(server, "GET", "/truncated")


def test_not_http_is_an_oserror(server: str) -> None:
    with pytest.raises(OSError, match=r"not an HTTP/1\.x status line"):
        unixhttp.request(server, "GET", "/garbage")


def test_no_server(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        unixhttp.request(str(tmp_path / "nothing.sock"), "GET", "/version", timeout=1)


def test_docker_falls_back_to_the_cli_when_version_is_not_json(tmp_path: Path) -> None:
    from stagecache.engine.api import EngineAPI
    from stagecache.engine.docker import Docker
    from stagecache.process import Completed

    class NotJson(_Handler):
        def do_GET(self) -> None:
            self._send(200, b"<html>a proxy, not the engine</html>")

    path = str(tmp_path / "odd.sock")
    with _Server(path, NotJson) as srv:
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        try:
            calls: list[list[str]] = []

            def runner(argv: Sequence[str], **_: object) -> Completed:
                calls.append(list(argv))
                return Completed(list(argv), 0, "20.10.24 linux/amd64\n", "")

            engine = Docker(runner=runner, api=EngineAPI(path)).engine()
        finally:
            srv.shutdown()
    assert (engine.version, engine.platform) == ("20.10.24", "linux/amd64")
    assert [call[:2] for call in calls] == [["docker", "version"]]
