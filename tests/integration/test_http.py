"""HTTP behaviour and hostile input against a real oned (OpenNebula's transport rules)."""

from __future__ import annotations

import socket
import threading
import time
import xmlrpc.client
from pathlib import Path

import pytest

from .conftest import Daemon

pytestmark = pytest.mark.slow


def raw_http(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def post(body: bytes, path: str = "/RPC2", extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def call_body(session: str, method: str = "one.system.version") -> bytes:
    return xmlrpc.client.dumps((session,), method).encode()


@pytest.fixture
def tight(tmp_path: Path) -> Daemon:
    d = Daemon(
        tmp_path / "tight",
        extra_conf="MESSAGE_SIZE = 4096\nTIMEOUT = 1\nKEEPALIVE_MAX_CONN = 3\n",
    )
    d.start()
    yield d  # type: ignore[misc]
    d.stop()


def test_paths_methods_and_lengths(daemon: Daemon) -> None:
    """404 elsewhere, 405 for GET, OPTIONS 200, 411 without Content-Length, / is accepted."""
    port = daemon.port
    assert raw_http(port, post(call_body(daemon.session), "/other")).startswith(b"HTTP/1.1 404")
    assert raw_http(port, b"GET /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405")
    opt = raw_http(port, b"OPTIONS /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert opt.startswith(b"HTTP/1.1 200") and b"Allow: POST" in opt
    no_len = b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert raw_http(port, no_len).startswith(b"HTTP/1.1 411")
    reply = raw_http(port, post(call_body(daemon.session), "/"))
    assert reply.startswith(b"HTTP/1.1 200") and b"<boolean>1</boolean>" in reply
    assert b"Content-Type: text/xml" in reply


def test_billion_laughs_refused_fast(daemon: Daemon) -> None:
    """An entity-expansion bomb is refused in milliseconds with fault -503."""
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
            for i in range(1, 10)
        )
        + "]><methodCall><methodName>one.user.info</methodName><params><param><value>"
        "&lol9;</value></param></params></methodCall>"
    ).encode()
    start = time.monotonic()
    reply = raw_http(daemon.port, post(bomb))
    assert time.monotonic() - start < 1.0
    assert b"<name>faultCode</name><value><i4>-503</i4>" in reply
    assert daemon.alive()


def test_deep_nesting_and_big_ints(daemon: Daemon) -> None:
    """Arrays nested 50,000 deep and out-of-range ints do not hurt the daemon."""
    deep = (
        b"<methodCall><methodName>one.user.info</methodName><params><param>"
        + b"<value><array><data>" * 50000
        + b"</data></array></value>" * 50000
        + b"</param></params></methodCall>"
    )
    reply = raw_http(daemon.port, post(deep), timeout=30)
    assert reply.startswith(b"HTTP/1.1 200")
    big = (
        "<methodCall><methodName>one.user.info</methodName><params>"
        f"<param><value><string>{daemon.session}</string></value></param>"
        "<param><value><i4>99999999999</i4></value></param></params></methodCall>"
    ).encode()
    assert b"-503" in raw_http(daemon.port, post(big))
    i8 = big.replace(b"<i4>99999999999</i4>", b"<i8>99999999999</i8>")
    assert b"-501" in raw_http(daemon.port, post(i8))
    assert xmlrpc.client.ServerProxy(daemon.url).one.system.version(daemon.session)[0]


def test_size_limit_timeouts_and_keepalive(tight: Daemon) -> None:
    """Bodies over MESSAGE_SIZE get HTTP 500; slow requests are dropped; keep-alive ends."""
    big = b"x" * 5000
    reply = raw_http(tight.port, post(big))
    assert reply.startswith(b"HTTP/1.1 500") and b"XML-RPC request too large (5000 bytes)" in reply
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as sock:
        sock.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<meth")
        start = time.monotonic()
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - start < 4
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as sock:
        headers = []
        for _ in range(3):
            sock.sendall(post(call_body(tight.session)))
            data = b""
            while not _complete(data):
                data += sock.recv(65536)
            headers.append(data.split(b"\r\n\r\n")[0].lower())
        assert b"connection: close" not in headers[0]
        assert b"connection: close" in headers[2]
    assert tight.alive()


def test_many_concurrent_clients(daemon: Daemon) -> None:
    """Forty clients with keep-alive connections all get answers."""
    errors: list[BaseException] = []
    results: list[int] = []

    def worker(n: int) -> None:
        try:
            proxy = xmlrpc.client.ServerProxy(daemon.url)
            for _ in range(10):
                assert proxy.one.user.info(daemon.session, 0)[0]
            results.append(n)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(results) == 40


def test_wrong_calls(daemon: Daemon) -> None:
    """Wrong types, counts, sessions and names get clear errors."""
    p = xmlrpc.client.ServerProxy(daemon.url)
    s = daemon.session
    with pytest.raises(xmlrpc.client.Fault) as exc:
        p.one.user.info()
    assert exc.value.faultCode == -500
    with pytest.raises(xmlrpc.client.Fault) as exc:
        p.one.user.allocate(s, "x")
    assert exc.value.faultCode == -501
    assert p.one.user.info(12, 0)[2] == 256
    assert p.one.user.info("", 0)[2] == 256
    uid = p.one.user.allocate(s, "dup", "pw", "")[1]
    assert p.one.user.allocate(s, "dup", "pw", "")[1] == (
        f"[one.user.allocate] NAME is already taken by USER {uid}."
    )
    assert p.one.group.delete(s, 1)[2] == 2048
    assert p.one.acl.addrule(s, "@1 FOO/* USE", "", "")[2] == 8192
    assert p.one.user.info(s, 0, False, "extra", 7)[0] is True


def test_concurrent_updates_of_one_object(daemon: Daemon) -> None:
    """Concurrent merges into one user's template all survive (per-object locking)."""
    p = xmlrpc.client.ServerProxy(daemon.url)
    uid = p.one.user.allocate(daemon.session, "target", "pw", "")[1]
    errors: list[object] = []

    def worker(n: int) -> None:
        proxy = xmlrpc.client.ServerProxy(daemon.url)
        for k in range(5):
            reply = proxy.one.user.update(daemon.session, uid, f'ATTR_{n}_{k}="{n}"', 1)
            if not reply[0]:
                errors.append(reply)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    body = p.one.user.info(daemon.session, uid)[1]
    for n in range(12):
        for k in range(5):
            assert f"<ATTR_{n}_{k}>" in body
