"""Shared library of our driver programs (the role of OpenNebula's
``OpenNebulaDriver.rb``, ``ActionManager.rb``, ``DriverExecHelper.rb`` and
``CommandManager.rb``). Standard library only.

A driver reads request lines on stdin, runs each action on a pool of worker threads
(at most ``concurrency`` at a time, optionally one per host), runs action scripts
from the remotes directory, and writes one reply line per action plus ``LOG`` lines,
each written whole under a lock. Wire behaviour follows the Ruby drivers:

* ``INIT`` is answered ``INIT SUCCESS - -``; ``FINALIZE`` stops accepting work and
  exits once running actions are done; stdin EOF exits at once with status 255.
* Lines are split on whitespace; a line starting with a blank is malformed; an
  unknown action or a wrong number of arguments is silently dropped.
* ``DRIVER_CANCEL <id>`` drops the queued or running action of that id (its reply
  is suppressed, its script killed) and logs ``Driver command for <id> cancelled``.
* A failing script logs ``Command execution failed (exit code: N): <cmd>`` and its
  stderr; stderr lines ``ERROR|INFO|WARN|DEBUG: [id] text`` become LOG lines; the
  reply INFO is stdout on success, else the other stderr lines.
"""

from __future__ import annotations

import base64
import binascii
import collections
import getopt
import os
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"

SEVERITY = {"ERROR": "E", "INFO": "I", "WARN": "W", "DEBUG": "D"}
_LOG_LINE = re.compile(r"^(ERROR|DEBUG|INFO):(.*)$")
_STDERR_LOG = re.compile(r"^(ERROR|INFO|WARN|DEBUG):\s+(\d+)?\s*(.*)$")
_RUBY_WS = b" \t\r\n\x0b\x0c"
_SHELL_SAFE = re.compile(r"([^A-Za-z0-9_\-.,:+/@\n])")


# ---------------------------------------------------------------------------
# small helpers


def ruby_to_i(text: str) -> int:
    """``String#to_i``: leading integer, else 0."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def b64(data: str | bytes) -> str:
    """``Base64.strict_encode64``."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> str:
    """``Base64.decode64``: lenient, ignores characters outside the alphabet."""
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def zb64(data: str | bytes) -> str:
    """base64 of zlib (best compression)."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def unzb64(text: str) -> str:
    """Inverse of :func:`zb64`."""
    return zlib.decompress(base64.b64decode(text)).decode("utf-8", "replace")


def shell_escape(word: str) -> str:
    """``Shellwords.escape`` (only used to print commands as the Ruby drivers do)."""
    if not word:
        return "''"
    return _SHELL_SAFE.sub(r"\\\1", word).replace("\n", "'\n'")


def xml_root(text: str) -> ET.Element:
    """Parse a document (raises on malformed XML, like REXML/Nokogiri users do)."""
    return ET.fromstring(text)


def xml_text(root: ET.Element, path: str) -> str | None:
    """Text of the element at ``path`` below ``root``: None if absent, "" if empty."""
    node = root.find(path)
    if node is None:
        return None
    return node.text or ""


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def one_location_remotes() -> Path:
    """OpenNebula's remotes directory for this installation."""
    location = os.environ.get("ONE_LOCATION")
    if location:
        return Path(location) / "var" / "remotes"
    return Path("/var/lib/one/remotes")


def remotes_dir(subdir: str) -> Path:
    """The remotes root holding ``subdir``.

    OpenNebula's location comes first (``$ONE_LOCATION/var/remotes`` or
    ``/var/lib/one/remotes``); then the ones shipped next to this program: the
    source checkout (``drivers/remotes``) or a package prefix (``<prefix>/lib/one/mads``
    with ``<prefix>/var/remotes``, ``<prefix>/var/lib/one/remotes`` or
    ``<prefix>/share/one/remotes``).
    """
    installed = one_location_remotes()
    if (installed / subdir).is_dir():
        return installed
    here = Path(__file__).resolve().parent
    prefix = here.parent.parent.parent
    for candidate in (
        here.parent / "remotes",
        prefix / "var" / "remotes",
        prefix / "var" / "lib" / "one" / "remotes",
        prefix / "share" / "one" / "remotes",
    ):
        if (candidate / subdir).is_dir():
            return candidate
    return installed


def parse_options(
    argv: list[str], shortopts: str, longopts: list[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """Options of a driver: oned passes ARGUMENTS as one word, re-split here the
    way the shell wrappers' ``$*`` does. Exits 255 on bad options (GetoptLong)."""
    words = " ".join(argv).split()
    try:
        return getopt.gnu_getopt(words, shortopts, longopts)
    except getopt.GetoptError as exc:
        sys.stderr.write(f"Error parsing options: {exc}\n")
        sys.exit(255)


def list_option(value: str) -> list[str]:
    return [v.strip() for v in value.split(",")]


def ensure_stderr() -> None:
    """oned starts drivers with fd 2 closed: point it at /dev/null (or a log)."""
    try:
        os.fstat(2)
    except OSError:
        target = os.environ.get("ONE_MAD_DEBUG_LOG", os.devnull)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if fd != 2:
            os.dup2(fd, 2)
            os.close(fd)
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)


# ---------------------------------------------------------------------------
# running commands


class Execution:
    """Result of one command (``GenericCommand``)."""

    def __init__(self, command: str, code: int, stdout: str, stderr: str) -> None:
        self.command = command
        self.code = code
        self.stdout = stdout
        self.stderr = stderr


class _Context(threading.local):
    action: Action | None = None


_context = _Context()


def current_action() -> Action | None:
    """The action running in this thread, if any."""
    return _context.action


def run_command(
    argv: list[str],
    stdin: str | bytes | None = None,
    timeout: float | None = None,
    log: Callable[[str], None] | None = None,
) -> Execution:
    """Run ``argv`` in its own process group (``LocalCommand.run``).

    On a non-zero exit the failure and the stderr are logged through ``log``; a
    timeout TERM-kills the group and yields ``Timeout executing <cmd>``.
    """
    command = " ".join(argv)
    data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
    action = _context.action
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        message = f"Internal error {exc.strerror} - {argv[0]}"
        if log:
            log(message)
        return Execution(command, 255, "", message)
    if action is not None:
        action.processes.append(proc)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.communicate()
        message = f"Timeout executing {command}"
        if log:
            log(message)
        return Execution(command, 255, "", message)
    finally:
        if action is not None and proc in action.processes:
            action.processes.remove(proc)
    code = proc.returncode if proc.returncode >= 0 else 255
    result = Execution(
        command, code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    )
    if code != 0 and log:
        log(f"Command execution failed (exit code: {code}): {command}")
        log(result.stderr)
    return result


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        pass


# ---------------------------------------------------------------------------
# the driver


class Action:
    """One queued or running action."""

    __slots__ = ("args", "cancelled", "handler", "host", "name", "oid", "parsed", "processes")

    def __init__(self, name: str, oid: int, handler: Callable[..., Any], args: list[Any]):
        self.name = name
        self.oid = oid
        self.handler = handler
        self.args = args
        self.host: str | None = None
        self.parsed: Any = None  # a handler's decoded payload, cached by host_of
        self.cancelled = False
        self.processes: list[subprocess.Popen[bytes]] = []


class Driver:
    """Reads requests, runs actions concurrently, writes replies and LOG lines.

    Args:
        concurrency: Maximum actions running at once (``-t``).
        threaded: False runs actions one at a time (IPAM, scheduler).
        single_host: Run at most one action per host (VMM drivers).
        host_of: Returns the host of an action (single_host mode).
        timestamp: Replies carry a timestamp field (IM drivers).
        out: Where replies go (default: stdout).
        synchronous: Run actions inline in :meth:`feed` (unit tests).
    """

    def __init__(
        self,
        *,
        concurrency: int = 10,
        threaded: bool = True,
        single_host: bool = False,
        host_of: Callable[[Action], str | None] | None = None,
        timestamp: bool = False,
        out: IO[bytes] | None = None,
        synchronous: bool = False,
        inline_ok: Callable[[Action], bool] | None = None,
    ) -> None:
        self.concurrency = max(1, concurrency) if threaded else 1
        self.single_host = single_host
        self.host_of = host_of
        self.timestamp = timestamp
        self.out = out if out is not None else sys.stdout.buffer
        self.synchronous = synchronous
        self.inline_ok = inline_ok
        self.log_options: dict[str, bool] = {}
        self._actions: dict[str, tuple[Callable[..., Any], int, bool]] = {}
        self._send_lock = threading.Lock()
        self._lock = threading.Condition()
        self._queue: collections.deque[Action] = collections.deque()
        self._running: dict[int, list[Action]] = {}
        self._busy_hosts: set[str] = set()
        self._num_running = 0
        self._finalize = False
        self._workers: list[threading.Thread] = []
        self._batching = False
        self._reader = 0
        self.register("INIT", self._init, 0)

    # -- registration and output -------------------------------------------

    def register(
        self, name: str, handler: Callable[..., Any], arity: int, variadic: bool = False
    ) -> None:
        """Register ``handler`` for ``name``; it takes ``arity`` string arguments
        (the id token first), or at least that many when ``variadic`` (the rest
        then come as one list)."""
        self._actions[name] = (handler, arity, variadic)

    def send(self, action: str, result: str | None, oid: Any = "-", info: Any = "-") -> None:
        """Write ``ACTION RESULT ID INFO`` (Ruby ``puts``: no extra newline)."""
        current = _context.action
        if current is not None and current.cancelled:
            return
        result_s = "" if result is None else str(result)
        info_s = "" if info is None else str(info)
        if self.timestamp:
            line = f"{action} {result_s} {oid} {int(time.time())} {info_s}"
        else:
            line = f"{action} {result_s} {oid} {info_s}"
        if not line.endswith("\n"):
            line += "\n"
        data = line.encode("utf-8", "replace")
        with self._send_lock:
            self.out.write(data)
            if not (self._batching and threading.get_ident() == self._reader):
                self.out.flush()

    def log(
        self,
        oid: Any,
        message: str,
        all_lines: bool = True,
        encode: bool = False,
        compress: bool = False,
    ) -> None:
        """``DriverExecHelper#log``: one LOG line per line of ``message``."""
        encode = encode or self.log_options.get("encode", False)
        compress = compress or self.log_options.get("compress", False)
        for raw in message.strip().splitlines():
            match = _LOG_LINE.match(raw)
            if match:
                severity: str | None = SEVERITY[match.group(1)]
                line = match.group(2)
            else:
                severity = "I" if all_lines else None
                line = raw
            if severity is None:
                continue
            line = line.strip()
            data: str | bytes = line
            if compress:
                data = zlib.compress(line.encode(), 9)
            if encode:
                data = b64(data)
            self.send("LOG", severity, oid, data if isinstance(data, str) else line)

    def log_method(self, oid: Any) -> Callable[[str], None]:
        return lambda message: self.log(oid, message)

    def info_from_execution(self, execution: Execution) -> tuple[str, str]:
        """``get_info_from_execution``: LOG the tagged stderr lines, return
        (result, info)."""
        encode = self.log_options.get("encode", False)
        compress = self.log_options.get("compress", False)
        err_info = ""
        for raw in execution.stderr.splitlines():
            line = raw.strip()
            match = _STDERR_LOG.match(line)
            if not match:
                err_info += line
                continue
            sev = SEVERITY[match.group(1)]
            oid = int(match.group(2)) if match.group(2) else "-1"
            msg: str | bytes = match.group(3).strip()
            if compress:
                msg = zlib.compress(str(msg).encode(), 9)
            if encode:
                msg = b64(msg)
            self.send("LOG", sev, oid, msg)
        if execution.code == 0:
            result, info = SUCCESS, execution.stdout
        else:
            result, info = FAILURE, err_info.replace("\n", " ").strip()
        return result, info or "-"

    def _flush(self) -> None:
        with self._send_lock:
            self.out.flush()

    def _init(self) -> None:
        self.send("INIT", SUCCESS)

    # -- input ------------------------------------------------------------

    def feed(self, line: bytes) -> None:
        """Handle one input line (``OpenNebulaDriver#loop``)."""
        args = line.split()
        if not args:
            return
        if line[:1] in _RUBY_WS:
            sys.stderr.write(f"Malformed message: {line!r}\n")
            return
        words = [a.decode("utf-8", "replace") for a in args]
        name = words.pop(0).upper()
        oid = ruby_to_i(words[0]) if words else 0
        if name == "DRIVER_CANCEL":
            self.cancel(oid)
            self.log(oid, f"Driver command for {oid} cancelled")
            return
        self.trigger(name, oid, words)

    def trigger(self, name: str, oid: int, args: list[str]) -> None:
        """``ActionManager#trigger_action``: queue, or drop silently."""
        with self._lock:
            if self._finalize:
                return
            if name == "FINALIZE":
                self._finalize = True
                self._lock.notify_all()
                return
            entry = self._actions.get(name)
            if entry is None:
                return
            handler, arity, variadic = entry
            if variadic:
                if len(args) < arity:
                    return
                call_args: list[Any] = [*args[:arity], args[arity:]]
            else:
                if len(args) != arity:
                    return
                call_args = list(args)
            action = Action(name, oid, handler, call_args)
            inline = self.synchronous or self._can_inline(action)
            if not inline:
                self._queue.append(action)
                self._ensure_workers()
                self._lock.notify()
                return
        self._execute(action)

    def _can_inline(self, action: Action) -> bool:
        """Whether an action known not to block may run in the reader thread
        without overtaking queued work (same order, same per-host rule)."""
        if self.inline_ok is None or self._queue or not self.inline_ok(action):
            return False
        if self.single_host and self.host_of is not None:
            try:
                action.host = self.host_of(action) or ""
            except Exception:
                action.host = ""
            if action.host and action.host in self._busy_hosts:
                return False
        return True

    def cancel(self, oid: int) -> None:
        """``ActionManager#cancel_action``."""
        with self._lock:
            running = self._running.get(oid)
            if running:
                for action in running:
                    action.cancelled = True
                    for proc in list(action.processes):
                        _kill_group(proc, signal.SIGKILL)
                return
            for action in list(self._queue):
                if action.oid == oid:
                    self._queue.remove(action)
                    break

    # -- execution -----------------------------------------------------------

    def _ensure_workers(self) -> None:
        while len(self._workers) < self.concurrency:
            worker = threading.Thread(target=self._work, daemon=True)
            self._workers.append(worker)
            worker.start()

    def _next_runnable(self) -> Action | None:
        if not self.single_host:
            return self._queue.popleft() if self._queue else None
        for index, action in enumerate(self._queue):
            if action.host is None and self.host_of is not None:
                try:
                    action.host = self.host_of(action) or ""
                except Exception:
                    action.host = ""
            if not action.host or action.host not in self._busy_hosts:
                del self._queue[index]
                if action.host:
                    self._busy_hosts.add(action.host)
                return action
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                action = self._next_runnable()
                while action is None:
                    if self._finalize and self._num_running == 0 and not self._queue:
                        self._lock.notify_all()
                        return
                    self._lock.wait()
                    action = self._next_runnable()
                self._num_running += 1
                self._running.setdefault(action.oid, []).append(action)
            try:
                self._execute(action)
            finally:
                with self._lock:
                    self._num_running -= 1
                    running = self._running.get(action.oid)
                    if running is not None:
                        running.remove(action)
                        if not running:
                            del self._running[action.oid]
                    if action.host:
                        self._busy_hosts.discard(action.host)
                    if self._finalize:
                        self._lock.notify_all()
                    elif self._queue:
                        self._lock.notify()

    def _execute(self, action: Action) -> None:
        previous = _context.action
        _context.action = action
        try:
            action.handler(*action.args)
        except Exception as exc:  # an action that raises is simply not answered
            sys.stderr.write(f"Error running {action.name}: {exc!r}\n")
        finally:
            _context.action = previous

    def run(self, stdin: IO[bytes] | None = None) -> None:
        """Main loop: read lines until EOF (exit 255) or FINALIZE (exit 0)."""
        fd = (stdin if stdin is not None else sys.stdin.buffer).fileno()
        self._reader = threading.get_ident()
        pending = b""
        while not self._finalize:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self._flush()
                os._exit(255)
            *lines, pending = (pending + chunk).split(b"\n")
            # Replies of actions answered in this thread go out once per chunk.
            self._batching = True
            try:
                for line in lines:
                    self.feed(line + b"\n")
                    if self._finalize:
                        break
            finally:
                self._batching = False
                self._flush()
        with self._lock:
            while self._num_running or self._queue:
                if not self._workers:
                    break
                self._lock.wait(0.5)
        self.out.flush()
        sys.exit(0)


def iter_lines(text: str) -> Iterable[str]:
    return text.splitlines()
