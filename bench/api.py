#!/usr/bin/env python3
"""XML-RPC throughput, latency and memory benchmark for an OpenNebula core daemon.

Usage::

    bench/api.py --endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        [--users 1000] [--duration 10] [--concurrency 1,16] \
        [--methods user.info,userpool.info] [--pid PID] [--json] [--cleanup] [--no-bomb] \
        [--pools 1000]

Only standard OpenNebula XML-RPC calls are made, so the same script measures both this
daemon and OpenNebula's own ``oned``.  Before measuring, it makes sure ``--users``
users named ``benchuserNNNN`` exist (``one.user.allocate``), so that ``one.userpool.info``
renders a realistic pool.

The load generator runs in several processes so that it is not the bottleneck (one Python
client saturates a core at about 1,000 calls/s).  Each process drives its share of the
connections from a single-threaded ``selectors`` loop over raw HTTP/1.1 keep-alive sockets:
request bodies are serialised once with ``xmlrpc.client.dumps``, and a response is only
framed (Content-Length or chunked) and checked for ``<boolean>1</boolean>``.  When the server
closes a connection (OpenNebula's ``oned`` does so after ``KEEPALIVE_MAX_CONN`` calls, with
``Connection: close``) the client reconnects transparently.  Latencies of all connections
are merged before taking percentiles.

``--compare-audit`` starts one local daemon from this checkout and runs the same load
with ``AUDIT = [ MODE = off | writes | all ]``, switched by SIGHUP between measurements,
in ``--rounds`` rounds; it prints calls/s and the daemon's CPU time per call against
MODE off (``user.update`` is the write to use for MODE writes). A round measures the
three modes back to back, so each "vs off" figure is the median over rounds of that
round's ratio: a machine whose speed drifts from round to round (a VM's neighbours)
moves all three alike and cancels out::

    bench/api.py --compare-audit --users 100 --duration 2 --concurrency 8 \
        --methods user.info,user.update --no-bomb --rounds 24

The ``--bomb`` check (on by default) sends one billion-laughs body and reports how long the
server took to answer; it gives up after 60 s.
"""

from __future__ import annotations

import argparse
import array
import itertools
import json
import multiprocessing
import multiprocessing.synchronize
import os
import selectors
import socket
import sys
import threading
import time
import xml.etree.ElementTree as ET
import xmlrpc.client
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

USER_PREFIX = "benchuser"
OK_MARK = b"<boolean>1</boolean>"
OK_SCAN = 512  # the success flag is the first value of the answer
RECV_SIZE = 256 * 1024
CONNECT_TIMEOUT = 10.0
BOMB_TIMEOUT = 60.0
MAX_CALLS_PER_CONN = 10_000_000  # hard bound on every measurement loop
MAX_RECONNECTS_PER_CALL = 3
START_GRACE = 30.0  # seconds a worker may take to start and connect


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise SystemExit(f"unsupported endpoint {url!r}: only http://host:port/path")
        return cls(parts.hostname, parts.port or 80, parts.path or "/RPC2")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


def http_request(endpoint: Endpoint, body: bytes) -> bytes:
    """Full HTTP/1.1 POST request (headers + body) for one XML-RPC call."""
    head = (
        f"POST {endpoint.path} HTTP/1.1\r\n"
        f"Host: {endpoint.host}:{endpoint.port}\r\n"
        "User-Agent: oned-bench\r\n"
        "Content-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def rpc_body(method: str, params: tuple[Any, ...]) -> bytes:
    return xmlrpc.client.dumps(params, methodname=method).encode("utf-8")


# --------------------------------------------------------------------------- HTTP framing


@dataclass
class Framed:
    """A complete HTTP response located in a receive buffer."""

    status: int
    body_start: int
    end: int  # index just past the response in the buffer
    close: bool  # the server will close the connection after this response
    chunked: bool


def _dechunk(buf: bytes | bytearray, start: int) -> tuple[int, bytes] | None:
    """Parse a chunked body at ``start``; return (end, body) or None when incomplete."""
    pos = start
    out = bytearray()
    for _ in range(1_000_000):
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip() or b"0", 16)
        pos = eol + 2
        if size == 0:
            # trailers end with an empty line
            end = buf.find(b"\r\n\r\n", pos - 2)
            return None if end < 0 else (end + 4, bytes(out))
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2
    raise ValueError("too many chunks")


def frame_response(buf: bytearray, eof: bool) -> Framed | None:
    """Locate one complete response at the start of ``buf`` (None: need more bytes)."""
    hend = buf.find(b"\r\n\r\n")
    if hend < 0:
        if eof:
            raise ValueError("connection closed inside response headers")
        return None
    head = bytes(buf[:hend]).decode("latin-1").lower()
    lines = head.split("\r\n")
    status_line = lines[0].split(None, 2)
    if len(status_line) < 2 or not status_line[0].startswith("http/"):
        raise ValueError(f"bad status line {lines[0]!r}")
    status = int(status_line[1])
    length: int | None = None
    chunked = False
    conn_hdr = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            conn_hdr = value.strip()
    close = "close" in conn_hdr or (status_line[0] == "http/1.0" and "keep-alive" not in conn_hdr)
    start = hend + 4
    if chunked:
        parsed = _dechunk(buf, start)
        if parsed is None:
            if eof:
                raise ValueError("connection closed inside chunked body")
            return None
        return Framed(status, start, parsed[0], close, True)
    if length is not None:
        if len(buf) < start + length:
            if eof:
                raise ValueError("connection closed inside response body")
            return None
        return Framed(status, start, start + length, close, False)
    # neither length nor chunked: the body runs to the end of the connection
    if not eof:
        return None
    return Framed(status, start, len(buf), True, False)


def response_ok(buf: bytearray, framed: Framed) -> bool:
    if framed.status != 200:
        return False
    if framed.chunked:
        parsed = _dechunk(buf, framed.body_start)
        return parsed is not None and parsed[1].find(OK_MARK, 0, OK_SCAN) >= 0
    return buf.find(OK_MARK, framed.body_start, min(framed.end, framed.body_start + OK_SCAN)) >= 0


# --------------------------------------------------------------------------- load worker


@dataclass
class WorkerResult:
    calls: int
    errors: int
    reconnects: int
    elapsed: float
    latencies: bytes  # array('d') of seconds
    first_error: str


class _Conn:
    """One keep-alive connection issuing the same request back to back."""

    __slots__ = ("buf", "calls_on_sock", "endpoint", "inflight", "retries", "sock", "t0")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.t0 = 0.0
        self.inflight = False
        self.calls_on_sock = 0
        self.retries = 0

    def connect(self) -> socket.socket:
        sock = socket.create_connection(
            (self.endpoint.host, self.endpoint.port), timeout=CONNECT_TIMEOUT
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(CONNECT_TIMEOUT)  # sends are small; recv only after readiness
        self.sock = sock
        self.buf.clear()
        self.calls_on_sock = 0
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def run_worker(
    endpoint: Endpoint,
    request: bytes,
    n_conns: int,
    duration: float,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[WorkerResult],
) -> None:
    """Process entry point: drive ``n_conns`` connections for ``duration`` seconds."""
    lat = array.array("d")
    calls = errors = reconnects = 0
    first_error = ""
    sel = selectors.DefaultSelector()
    conns = [_Conn(endpoint) for _ in range(n_conns)]

    def note_error(msg: str) -> None:
        nonlocal errors, first_error
        errors += 1
        if not first_error:
            first_error = msg

    def reopen(c: _Conn) -> bool:
        nonlocal reconnects
        if c.sock is not None:
            sel.unregister(c.sock)
            c.close()
        try:
            sel.register(c.connect(), selectors.EVENT_READ, c)
        except OSError as exc:
            note_error(f"connect: {exc}")
            return False
        reconnects += 1
        return True

    def send(c: _Conn, now: float, fresh: bool) -> None:
        """Send the request; ``fresh`` starts a new call (else it is a transparent retry)."""
        for _ in range(MAX_RECONNECTS_PER_CALL):
            if c.sock is None and not reopen(c):
                continue
            assert c.sock is not None
            try:
                c.sock.sendall(request)
            except OSError:
                if not reopen(c):
                    continue
                assert c.sock is not None
                try:
                    c.sock.sendall(request)
                except OSError as exc:
                    note_error(f"send: {exc}")
                    c.inflight = False
                    return
            if fresh:
                c.t0 = now
            c.inflight = True
            return
        c.inflight = False

    try:
        for c in conns:
            sel.register(c.connect(), selectors.EVENT_READ, c)
        barrier.wait(START_GRACE)
    except (OSError, threading.BrokenBarrierError) as exc:
        results.put(WorkerResult(0, 1, 0, 0.0, b"", f"start: {exc}"))
        return

    start = time.perf_counter()
    deadline = start + duration
    for c in conns:
        send(c, time.perf_counter(), fresh=True)
    max_calls = MAX_CALLS_PER_CONN * n_conns
    while calls + errors < max_calls:
        now = time.perf_counter()
        if now >= deadline:
            break
        if not any(c.inflight for c in conns):
            time.sleep(min(0.05, deadline - now))  # every connection failed: back off
            for c in conns:
                send(c, time.perf_counter(), fresh=True)
            continue
        for key, _ in sel.select(min(1.0, deadline - now)):
            c = key.data
            assert c.sock is not None
            try:
                data = c.sock.recv(RECV_SIZE)
            except OSError as exc:
                data = b""
                if not c.buf:
                    note_error(f"recv: {exc}")
            now = time.perf_counter()
            eof = not data
            if eof and not c.buf and c.inflight and c.calls_on_sock > 0 and c.retries < 2:
                # the server dropped an idle keep-alive connection: retry transparently
                c.retries += 1
                reopen(c)
                send(c, now, fresh=False)
                continue
            c.buf += data
            try:
                framed = frame_response(c.buf, eof)
            except ValueError as exc:
                note_error(str(exc))
                reopen(c)
                send(c, now, fresh=True)
                continue
            if framed is None:
                if eof:
                    note_error("connection closed without an answer")
                    reopen(c)
                    send(c, now, fresh=True)
                continue
            if not c.inflight:
                continue
            if response_ok(c.buf, framed):
                calls += 1
                lat.append(now - c.t0)
            else:
                note_error(
                    f"HTTP {framed.status}: "
                    + bytes(c.buf[framed.body_start : framed.body_start + 200]).decode(
                        "utf-8", "replace"
                    )
                )
            c.calls_on_sock += 1
            c.retries = 0
            del c.buf[: framed.end]
            if framed.close or eof:
                reopen(c)
            send(c, now, fresh=True)
    elapsed = min(time.perf_counter(), deadline) - start
    for c in conns:
        c.close()
    sel.close()
    results.put(WorkerResult(calls, errors, reconnects, elapsed, lat.tobytes(), first_error))


# --------------------------------------------------------------------------- measurement


@dataclass
class Measurement:
    method: str
    clients: int
    processes: int
    calls: int
    errors: int
    reconnects: int
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    first_error: str


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def measure(
    endpoint: Endpoint,
    method: str,
    params: tuple[Any, ...],
    clients: int,
    processes: int,
    duration: float,
) -> Measurement:
    request = http_request(endpoint, rpc_body(method, params))
    nproc = max(1, min(clients, processes))
    share = [clients // nproc + (1 if i < clients % nproc else 0) for i in range(nproc)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(nproc)
    results: multiprocessing.Queue[WorkerResult] = ctx.Queue()
    procs = [
        ctx.Process(
            target=run_worker,
            args=(endpoint, request, n, duration, barrier, results),
            daemon=True,
        )
        for n in share
    ]
    for p in procs:
        p.start()
    collected: list[WorkerResult] = []
    give_up = time.monotonic() + START_GRACE + duration + 30.0
    for _ in procs:
        try:
            collected.append(results.get(timeout=max(0.1, give_up - time.monotonic())))
        except Exception:  # queue.Empty: a worker died or hung
            break
    for p in procs:
        p.join(timeout=max(0.1, give_up - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join(5)
    lat: list[float] = []
    for r in collected:
        a = array.array("d")
        a.frombytes(r.latencies)
        lat.extend(a)
    lat.sort()
    calls = sum(r.calls for r in collected)
    errors = sum(r.errors for r in collected) + (nproc - len(collected))
    elapsed = max((r.elapsed for r in collected), default=0.0)
    first_error = next((r.first_error for r in collected if r.first_error), "")
    if len(collected) < nproc and not first_error:
        first_error = f"{nproc - len(collected)} worker(s) reported nothing"
    return Measurement(
        method=method,
        clients=clients,
        processes=nproc,
        calls=calls,
        errors=errors,
        reconnects=sum(r.reconnects for r in collected),
        calls_per_s=calls / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(lat, 50) * 1000.0,
        p99_ms=percentile(lat, 99) * 1000.0,
        first_error=first_error,
    )


# --------------------------------------------------------------------------- setup via XML-RPC


class OneClient:
    """Plain ``xmlrpc.client`` calls for setup and cleanup, unwrapping OpenNebula's envelope."""

    def __init__(self, endpoint: Endpoint, session: str) -> None:
        self.proxy = xmlrpc.client.ServerProxy(endpoint.url, allow_none=False)
        self.session = session

    def call(self, method: str, *args: Any) -> Any:
        reply = getattr(self.proxy, method)(self.session, *args)
        if not isinstance(reply, list) or not reply:
            raise RuntimeError(f"{method}: unexpected reply {reply!r}")
        if not reply[0]:
            raise RuntimeError(f"{method}: {reply[1]}")
        return reply[1]

    def bench_users(self) -> dict[str, int]:
        root = ET.fromstring(self.call("one.userpool.info"))
        users: dict[str, int] = {}
        for user in root.iter("USER"):
            name = user.findtext("NAME") or ""
            if name.startswith(USER_PREFIX):
                users[name] = int(user.findtext("ID") or "-1")
        return users

    def close(self) -> None:
        self.proxy("close")()


def ensure_users(client: OneClient, count: int) -> dict[str, int]:
    users = client.bench_users()
    wanted = [f"{USER_PREFIX}{i:04d}" for i in range(count)]
    missing = [name for name in wanted if name not in users]
    if len(users) >= count or not missing:
        print(f"users: {len(users)} {USER_PREFIX}* users already present", flush=True)
        return users
    print(f"users: creating {len(missing)} users ...", flush=True)
    t0 = time.monotonic()
    failures = 0
    for name in missing:
        try:
            uid = client.call("one.user.allocate", name, f"pw-{name}", "", [])
        except (RuntimeError, xmlrpc.client.Error, OSError) as exc:
            failures += 1
            if failures == 1:
                print(f"users: allocate {name} failed: {exc}", file=sys.stderr)
            if failures >= 10 and failures * 2 > len(missing):
                raise SystemExit("users: too many allocation failures") from exc
            continue
        users[name] = int(uid)
    print(
        f"users: created {len(missing) - failures} in {time.monotonic() - t0:.1f} s"
        + (f" ({failures} failed)" if failures else ""),
        flush=True,
    )
    return users


def cleanup_users(client: OneClient, users: dict[str, int]) -> None:
    failures = 0
    for name, uid in sorted(users.items()):
        try:
            client.call("one.user.delete", uid)
        except (RuntimeError, xmlrpc.client.Error, OSError) as exc:
            failures += 1
            if failures == 1:
                print(f"cleanup: delete {name} ({uid}) failed: {exc}", file=sys.stderr)
    print(f"cleanup: deleted {len(users) - failures} {USER_PREFIX}* users", flush=True)


# --------------------------------------------------------------------------- RSS


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def find_listener_pid(port: int) -> int | None:
    """Pid of the local process listening on ``port`` (via /proc), if visible to us."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(proc.name)
        except OSError:
            continue
    return None


def read_rss_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB, or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if "VmRSS" not in values:
        return None
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


# --------------------------------------------------------------------------- billion laughs


def bomb_body(session: str) -> bytes:
    entities = ['  <!ENTITY lol0 "lol">']
    for i in range(1, 10):
        refs = f"&lol{i - 1};" * 10
        entities.append(f'  <!ENTITY lol{i} "{refs}">')
    dtd = "\n".join(entities)
    return (
        '<?xml version="1.0"?>\n'
        f"<!DOCTYPE methodCall [\n{dtd}\n]>\n"
        "<methodCall><methodName>one.user.info</methodName><params>"
        f"<param><value><string>{session}</string></value></param>"
        "<param><value><string>&lol9;</string></value></param>"
        "</params></methodCall>\n"
    ).encode()


@dataclass
class BombResult:
    size: int
    ms: float
    status: str
    head: str


def run_bomb(endpoint: Endpoint, session: str) -> BombResult:
    body = bomb_body(xmlrpc.client.escape(session))
    request = http_request(endpoint, body)
    buf = bytearray()
    t0 = time.monotonic()
    deadline = t0 + BOMB_TIMEOUT
    status = "no answer"
    try:
        with socket.create_connection((endpoint.host, endpoint.port), CONNECT_TIMEOUT) as sock:
            sock.sendall(request)
            while len(buf) < 1 << 20:
                left = deadline - time.monotonic()
                if left <= 0:
                    status = f"no answer within {BOMB_TIMEOUT:.0f} s"
                    break
                sock.settimeout(left)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    status = f"no answer within {BOMB_TIMEOUT:.0f} s"
                    break
                buf += data
                framed = frame_response(buf, not data)
                if framed is not None:
                    status = f"HTTP {framed.status}"
                    break
                if not data:
                    break
    except (OSError, ValueError) as exc:
        status = f"{type(exc).__name__}: {exc}"
        if buf:
            status += f" after {len(buf)} bytes"
    elapsed = (time.monotonic() - t0) * 1000.0
    hend = buf.find(b"\r\n\r\n")
    shown = buf[hend + 4 :] if hend >= 0 else buf
    head = bytes(shown[:160]).decode("utf-8", "replace").replace("\r", "").replace("\n", " ")
    try:  # show the fault or the [ok, message, code] envelope when the answer parses
        params, _ = xmlrpc.client.loads(bytes(shown))
        head = repr(params[0])[:200]
    except xmlrpc.client.Fault as fault:
        head = f"fault {fault.faultCode}: {fault.faultString}"[:200]
    except Exception:  # not XML-RPC: keep the raw first bytes
        pass
    return BombResult(len(body), elapsed, status, head)


# --------------------------------------------------------------------------- main


METHODS = ("user.info", "userpool.info", "system.version", "user.update")


def default_session() -> str | None:
    path = Path(os.environ.get("ONE_AUTH") or Path.home() / ".one" / "one_auth")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark an OpenNebula XML-RPC endpoint (calls/s, p50/p99, RSS).",
    )
    ap.add_argument("--endpoint", default="http://127.0.0.1:2633/RPC2")
    ap.add_argument("--session", help="user:password (default: $ONE_AUTH or ~/.one/one_auth)")
    ap.add_argument("--users", type=int, default=1000, help="benchuser* users to ensure")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    ap.add_argument("--concurrency", default="1,16", help="comma list of client counts")
    ap.add_argument("--methods", default="user.info,userpool.info", help=", ".join(METHODS))
    ap.add_argument(
        "--processes",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="max load-generator processes (default 2 x CPUs)",
    )
    ap.add_argument("--pid", type=int, help="daemon pid for RSS (default: port owner)")
    ap.add_argument("--json", action="store_true", help="also print a JSON summary line")
    ap.add_argument("--cleanup", action="store_true", help="delete benchuser* users at the end")
    ap.add_argument(
        "--bomb",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send one billion-laughs body (default on)",
    )
    ap.add_argument(
        "--compare-audit",
        action="store_true",
        help="compare AUDIT MODE off, writes and all in one local oned (switched by SIGHUP)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=24,
        help="--compare-audit: interleaved rounds (24: each order of the 4 series once)",
    )
    ap.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="--compare-audit: instead count the daemon's instructions per call over N calls "
        "in each mode under callgrind (valgrind): the figure a noisy machine cannot distort",
    )
    ap.add_argument(
        "--pools",
        type=int,
        default=0,
        metavar="N",
        help="also time every family's pool info with N objects each (bench/pools.py)",
    )
    args = ap.parse_args(argv)
    if args.compare_audit:
        args.session = "oneadmin:bench-audit-pw"
    args.session = args.session or default_session()
    if not args.session:
        ap.error("--session is required (no $ONE_AUTH or ~/.one/one_auth)")
    try:
        args.clients = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        ap.error(f"bad --concurrency {args.concurrency!r}")
    if not args.clients or any(c < 1 or c > 1024 for c in args.clients):
        ap.error("--concurrency values must be between 1 and 1024")
    args.method_list = [m.strip().removeprefix("one.") for m in args.methods.split(",")]
    unknown = [m for m in args.method_list if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    if not 0 < args.duration <= 3600:
        ap.error("--duration must be in (0, 3600]")
    if not 0 <= args.users <= 100_000:
        ap.error("--users must be in [0, 100000]")
    if args.processes < 1:
        ap.error("--processes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare_audit and args.instructions:
        from audit_instructions import count_audit_instructions

        return count_audit_instructions(args)
    if args.compare_audit:
        return compare_audit(args)
    endpoint = Endpoint.parse(args.endpoint)
    session: str = args.session
    client = OneClient(endpoint, session)
    try:
        version = client.call("one.system.version")
    except (RuntimeError, xmlrpc.client.Error, OSError) as exc:
        print(f"cannot reach {endpoint.url}: {exc}", file=sys.stderr)
        return 2
    print(f"endpoint: {endpoint.url} (OpenNebula {version})", flush=True)
    users = ensure_users(client, args.users)
    pool_size = len(ET.fromstring(client.call("one.userpool.info")).findall("USER"))
    target_uid = users.get(f"{USER_PREFIX}0000", next(iter(users.values()), 0))
    print(f"users in pool: {pool_size}; one.user.info target uid {target_uid}", flush=True)

    params: dict[str, tuple[Any, ...]] = {
        "user.info": (session, target_uid),
        "userpool.info": (session,),
        "system.version": (session,),
        "user.update": (session, target_uid, 'BENCH="1"', 1),  # a write (merge, same value)
    }
    pid = args.pid if args.pid is not None else find_listener_pid(endpoint.port)
    rss_before = read_rss_kib(pid) if pid is not None else None

    results: list[Measurement] = []
    header = (
        f"{'method':<22} {'clients':>7} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    print(header)
    print("-" * len(header), flush=True)
    for method in args.method_list:
        for clients in args.clients:
            m = measure(
                endpoint,
                f"one.{method}",
                params[method],
                clients,
                args.processes,
                args.duration,
            )
            results.append(m)
            print(
                f"{m.method:<22} {m.clients:>7} {m.calls_per_s:>9.0f} "
                f"{m.p50_ms:>8.2f} {m.p99_ms:>8.2f} {m.errors:>7}",
                flush=True,
            )
            if m.first_error:
                print(f"  first error: {m.first_error[:300]}", flush=True)

    rss = read_rss_kib(pid) if pid is not None else None
    if pid is not None and rss is not None:
        before = f", before {rss_before[0] / 1024:.1f} MiB" if rss_before else ""
        print(
            f"RSS: {rss[0] / 1024:.1f} MiB (peak {rss[1] / 1024:.1f} MiB{before}; pid {pid})",
            flush=True,
        )
    else:
        print("RSS: n/a", flush=True)

    bomb: BombResult | None = None
    if args.bomb:
        bomb = run_bomb(endpoint, session)
        print(
            f"billion laughs ({bomb.size} B body): {bomb.ms:.1f} ms, {bomb.status}: {bomb.head}",
            flush=True,
        )

    if args.pools:
        # one line per family's pool info with --pools objects each (bench/pools.py)
        import pools

        pools.main(
            [
                "--endpoint", endpoint.url, "--session", session,
                "--objects", str(args.pools), "--duration", str(args.duration),
                *(["--cleanup"] if args.cleanup else []),
            ]
        )  # fmt: skip

    if args.cleanup:
        cleanup_users(client, users)

    if args.json:
        summary = {
            "endpoint": endpoint.url,
            "version": version,
            "users_in_pool": pool_size,
            "duration_s": args.duration,
            "results": [asdict(r) for r in results],
            "rss_kib": rss[0] if rss else None,
            "rss_peak_kib": rss[1] if rss else None,
            "pid": pid,
            "bomb": asdict(bomb) if bomb else None,
        }
        print(json.dumps(summary))
    return 1 if any(r.errors for r in results) else 0


# --------------------------------------------------------------------------- audit modes

AUDIT_MODES = ("off", "writes", "all")
#: MODE off measured a second time in every round: how far two identical series differ
#: on this machine (the noise the other figures carry).
CONTROL = "off-again"
#: Seconds of unmeasured load after a switch: a reload kills and forks a scribe, whose
#: after-effects in oned (copy-on-write faults, cold caches) are not the trail's cost.
SETTLE = 0.5


def round_order(turn: int, modes: tuple[Any, ...]) -> tuple[Any, ...]:
    """The order of the modes in round ``turn``: every order in turn, so that each mode
    comes first, last and after each other mode equally often (what runs just before
    a measurement can shift it by a percent or two)."""
    orders = sorted(itertools.permutations(modes), key=lambda o: [modes.index(m) for m in o])
    return orders[turn % len(orders)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _locked(path: Path) -> bool:
    """Whether a process holds ``path``'s flock (the audit scribe holds its journal's)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class AuditedOned:
    """``python -m oned -f`` from this checkout (this interpreter) on a free port, in a
    temporary ONE_LOCATION, whose AUDIT MODE is switched between measurements by
    rewriting oned.conf and sending SIGHUP (``systemctl reload``). Comparing modes in
    one process leaves out what differs between two processes started alike (memory
    layout, which core they share with the load): several percent on this machine."""

    def __init__(self, password: str, mode: str = "off", audit: str = "",
                 wrapper: list[str] | None = None, start_timeout: float = 60) -> None:  # fmt: skip
        """``audit``: more AUDIT attributes; ``wrapper``: a command oned runs under."""
        import subprocess
        import tempfile

        from oned.locations import packaged_share  # the daemon under test

        self.root = Path(tempfile.mkdtemp(prefix="bench-audit-"))
        (self.root / "etc").mkdir()
        conf = (packaged_share() / "etc" / "oned.conf").read_text()
        self.conf = conf.replace("-p 2101 -l 2102", "-p 0 -l 0")  # hook bus: own ports
        self.mode = mode
        self.audit = f", {audit}" if audit else ""
        self._log_read = 0
        self._reloads_seen = 0
        self._write_conf()
        (self.root / "one_auth").write_text(f"oneadmin:{password}\n")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.endpoint = Endpoint("127.0.0.1", port, "/RPC2")
        env = dict(os.environ, ONE_LOCATION=str(self.root), ONE_AUTH=str(self.root / "one_auth"))
        env.pop("NOTIFY_SOCKET", None)
        with (self.root / "stdout.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [*(wrapper or []), sys.executable, "-m", "oned", "-f", "--port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.root,
            )  # fmt: skip
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"oned did not start; see {self.root / 'stdout.log'}")

    def _write_conf(self) -> None:
        mode = "off" if self.mode == CONTROL else self.mode
        audit = f'AUDIT = [ MODE = "{mode}", PATH = "audit-{mode}.log"{self.audit} ]'
        (self.root / "etc" / "oned.conf").write_text(f"{self.conf}\n{audit}\n")

    def _reloads(self) -> int:
        """How many reloads oned.log has told of (reading only what is new: the log
        grows by a line per call)."""
        try:
            with (self.root / "var" / "oned.log").open("rb") as log:
                log.seek(self._log_read)
                new = log.read()
        except OSError:
            return self._reloads_seen
        cut = new.rfind(b"\n") + 1  # a line being written is read next time
        self._log_read += cut
        self._reloads_seen += new[:cut].count(b"(reloaded)")
        return self._reloads_seen

    def switch(self, mode: str) -> bool:
        """Record calls as AUDIT MODE ``mode`` from now on (waits for the reload);
        whether it was another mode."""
        import signal

        if mode == self.mode:
            return False
        self.mode = mode
        self._write_conf()
        seen = self._reloads()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while self._reloads() == seen:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"oned did not reload its AUDIT settings; see {self.root}")
            time.sleep(0.02)
        if mode not in ("off", CONTROL):  # a reload starts a new scribe: wait for it
            journal = self.root / "var" / f".audit-{mode}.log.journal"
            while not _locked(journal) and time.monotonic() < deadline:
                time.sleep(0.02)
        return True

    def scribe_pid(self) -> int | None:
        """The audit scribe oned runs (None: none, the daemon writes the log itself)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid and b"oned.audit.scribe" in cmdline:
                return int(entry.name)
        return None

    def log_bytes(self, mode: str) -> int:
        path = self.root / "var" / f"audit-{mode}.log"
        return path.stat().st_size if path.exists() else 0

    def stop(self, timeout: float = 30) -> None:
        import shutil
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except Exception:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def compare_audit(args: argparse.Namespace) -> int:
    """The same load with AUDIT MODE off, writes and all, switched in one local daemon
    (``AuditedOned``) for each measurement, in ``--rounds`` rounds (each in another
    order); prints calls/s and the daemon's CPU time per call (the figure a busy
    machine distorts least), each with the median of its per-round ratio to MODE
    "off" (paired, so drift between rounds cancels) and the quartiles of that ratio."""
    import statistics

    session: str = args.session
    samples: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {}
    daemon = AuditedOned(session.split(":", 1)[1])
    try:
        pid = daemon.proc.pid
        users = ensure_users(OneClient(daemon.endpoint, session), args.users)
        target = users.get(f"{USER_PREFIX}0000", 0)
        params = {
            "user.info": (session, target),
            "userpool.info": (session,),
            "system.version": (session,),
            "user.update": (session, target, 'BENCH="1"', 1),
        }
        for method in args.method_list:  # warm up: the first seconds of a daemon run slower
            measure(daemon.endpoint, f"one.{method}", params[method], max(args.clients),
                    args.processes, 2.0)  # fmt: skip
        for turn in range(args.rounds):
            order = round_order(turn, (*AUDIT_MODES, CONTROL))
            for method in args.method_list:
                for clients in args.clients:
                    for mode in order:
                        if daemon.switch(mode):  # steady state: not the reload's aftermath
                            measure(daemon.endpoint, f"one.{method}", params[method], clients,
                                    args.processes, SETTLE)  # fmt: skip
                        scribe = daemon.scribe_pid()
                        cpu0 = cpu_seconds(pid)
                        scribe0 = cpu_seconds(scribe) if scribe else 0.0
                        m = measure(daemon.endpoint, f"one.{method}", params[method],
                                    clients, args.processes, args.duration)  # fmt: skip
                        cpu = cpu_seconds(pid) - cpu0
                        try:
                            scribe_cpu = cpu_seconds(scribe) - scribe0 if scribe else 0.0
                        except OSError:  # it was replaced during the measurement
                            scribe_cpu = float("nan")
                        calls = m.calls or float("nan")
                        samples.setdefault((method, clients, mode), []).append(
                            (m.calls_per_s, cpu / calls * 1e6, scribe_cpu / calls * 1e6)
                        )
                        if m.errors:
                            print(f"  {mode}: {m.errors} errors: {m.first_error[:200]}")
        log_sizes = {mode: daemon.log_bytes(mode) for mode in AUDIT_MODES}
    finally:
        daemon.stop()
    header = (
        f"{'method':<18} {'clients':>7} {'audit':>9} {'calls/s':>9} {'vs off':>7} "
        f"{'cpu us/call':>11} {'vs off':>7} {'middle half':>15} {'scribe us/call':>14}"
    )
    print(header)
    print("-" * len(header))
    for method in args.method_list:
        for clients in args.clients:
            base = samples[(method, clients, "off")]
            for mode in (*AUDIT_MODES, CONTROL):
                got = samples[(method, clients, mode)]
                rate = statistics.median(r for r, _, _ in got)
                cpu = statistics.median(c for _, c, _ in got)
                scribe_us = statistics.median(s for _, _, s in got)
                rate_vs = statistics.median(
                    r / b for (r, _, _), (b, _, _) in zip(got, base, strict=True)
                )
                ratios = sorted(c / b for (_, c, _), (_, b, _) in zip(got, base, strict=True))
                cpu_vs = statistics.median(ratios)
                low, high = ratios[len(ratios) // 4], ratios[(len(ratios) * 3) // 4]
                spread = f"{(low - 1) * 100:+.1f}..{(high - 1) * 100:+.1f}%"
                print(
                    f"{method:<18} {clients:>7} {mode:>9} {rate:>9.0f} "
                    f"{(rate_vs - 1) * 100:>+6.1f}% {cpu:>11.1f} "
                    f"{(cpu_vs - 1) * 100:>+6.1f}% {spread:>13} {scribe_us:>14.1f}"
                )
    print("vs off: median of the per-round ratios; middle half: their quartiles;")
    print(f"{CONTROL}: MODE off measured again, the noise of the figures above;")
    print("scribe: CPU time per call of the process that writes the audit log for oned")
    print("audit log bytes: " + ", ".join(f"{m} {n}" for m, n in log_sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
