"""The sinks' shared keep-alive HTTP client against a real `http.server` on a free port: reuse,
a connection the server dropped while idle, idle expiry, timeouts, refused ports, headers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gateway.sinks import keepalive
from gateway.sinks.keepalive import KeepAlive, Unreachable


class Server:
    """Answers 200 with the request's path; records each request's client port and headers.
    `drop_after_answer`: closes the connection after answering *without* saying so (no
    `Connection: close`), as a server or proxy does to an idle keep-alive connection."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.drop_after_answer = False
        self.delay = 0.0
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                srv.seen.append({"port": self.client_address[1], "headers": dict(self.headers),
                                 "body": body, "path": self.path})  # fmt: skip
                time.sleep(srv.delay)
                answer = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                if srv.drop_after_answer:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def client(port: int, **kw: Any) -> KeepAlive:
    return KeepAlive(f"http://127.0.0.1:{port}/root/", timeout=kw.pop("timeout", 2.0),
                     headers=kw.pop("headers", {"User-Agent": "t"}), **kw)  # fmt: skip


def test_requests_share_one_connection_and_get_their_answers(server: Server) -> None:
    c = client(server.port)
    answers = [c.request("POST", f"/root/w?n={i}", b"x" * i) for i in range(3)]
    assert [(a.status, a.body) for a in answers] == [(200, f"/root/w?n={i}".encode()) for i in range(3)]
    assert len({s["port"] for s in server.seen}) == 1
    assert [s["body"] for s in server.seen] == [b"", b"x", b"xx"]
    assert c.root == "/root" and c.origin == f"http://127.0.0.1:{server.port}"
    c.close()


def test_a_dropped_idle_connection_is_retried_only_for_idempotent_requests(server: Server) -> None:
    c = client(server.port)
    server.drop_after_answer = True
    c.request("POST", "/a", b"1")  # answered, then the server drops the pooled connection
    time.sleep(0.1)
    assert c.request("POST", "/b", b"2", idempotent=True).body == b"/b"
    ports = [s["port"] for s in server.seen]
    assert ports[0] != ports[1]  # the retry went out on a fresh connection

    c.close()  # the pooled connection /b went out on was dropped too: forget it
    c.request("POST", "/c", b"3")  # a fresh connection, pooled, dropped
    time.sleep(0.1)
    with pytest.raises(Unreachable) as info:
        c.request("POST", "/d", b"4")  # not idempotent: the caller decides what to do
    assert info.value.sent  # the request went out; the server may have acted on it
    assert [s["path"] for s in server.seen] == ["/a", "/b", "/c"]


def test_a_connection_idle_longer_than_idle_s_is_not_reused(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    c = client(server.port)
    c.request("POST", "/a")
    monkeypatch.setattr(keepalive, "IDLE_S", 0.0)
    c.request("POST", "/b")
    assert len({s["port"] for s in server.seen}) == 2
    monkeypatch.setattr(keepalive, "IDLE_S", 60.0)
    c.request("POST", "/c")
    assert len({s["port"] for s in server.seen}) == 2


def test_timeout_and_refused_port_raise_unreachable_saying_whether_sent(server: Server) -> None:
    server.delay = 1.0
    with pytest.raises(Unreachable, match=r"TimeoutError|timed out") as info:
        client(server.port, timeout=0.2).request("POST", "/slow", b"x")
    assert info.value.sent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(Unreachable, match="ConnectionRefusedError") as info:
            client(free).request("POST", "/x", idempotent=True)
    assert not info.value.sent


def test_accept_encoding_is_identity_unless_the_caller_sets_it(server: Server) -> None:
    client(server.port).request("POST", "/a")
    client(server.port, headers={"Accept-Encoding": "gzip", "Content-Encoding": "gzip"}).request("POST", "/b")
    assert server.seen[0]["headers"]["Accept-Encoding"] == "identity"
    assert server.seen[1]["headers"]["Accept-Encoding"] == "gzip"
    assert "Host" in server.seen[0]["headers"]
