"""Running a hook command (OpenNebula's ``LocalCommand``/``SSHCommand``) and the result
document onehem-server sends back.

A command line runs through ``/bin/sh -c`` when it holds shell metacharacters and is
otherwise split on blanks and executed directly (what Ruby's ``Open3.popen3(string)``
does), in its own process group. Past its timeout the group gets SIGTERM, then SIGKILL
after a grace period; the result is then code 255 with ``Timeout executing <command>``.
Standard output and error are read as they come and only their first ``max_output``
bytes are kept, so a hook printing gigabytes costs a bounded amount of memory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from dataclasses import dataclass

from oned.hem.hooks import strict_b64

#: Characters that make Ruby's spawn hand a command string to ``/bin/sh -c``.
SHELL_META = frozenset("*?{}[]<>()~&|\\$;'`\"\n#")
#: Seconds between SIGTERM and SIGKILL of a timed-out hook's process group.
KILL_GRACE = 5.0
_CHUNK = 65536


@dataclass(frozen=True)
class CommandResult:
    """What ``GenericCommand`` keeps of a run: the command line, exit code and output."""

    command: str
    code: int
    stdout: bytes = b""
    stderr: bytes = b""

    def to_xml(self) -> str:
        """``GenericCommand#to_xml`` (the command is written as is, outputs base64 with
        Ruby's 60-column lines)."""
        return (
            "<EXECUTION_RESULT>"
            f"<COMMAND>{self.command}</COMMAND>"
            f"<STDOUT>{encode64(self.stdout)}</STDOUT>"
            f"<STDERR>{encode64(self.stderr)}</STDERR>"
            f"<CODE>{self.code}</CODE>"
            "</EXECUTION_RESULT>"
        )


def encode64(data: bytes) -> str:
    """Ruby's ``Base64.encode64``: 60-character lines, each ending with a newline."""
    return "".join(
        base64.b64encode(data[i : i + 45]).decode("ascii") + "\n" for i in range(0, len(data), 45)
    )


def response_body(
    arguments: str, result: CommandResult, remote_host: str, remote: bool, is_retry: bool
) -> str:
    """``build_response_body``: the base64 document following ``<rc> <hook_id>``."""
    xml = f"<ARGUMENTS>{arguments}</ARGUMENTS>{result.to_xml()}"
    if remote_host and remote:
        xml += f"<REMOTE_HOST>{remote_host}</REMOTE_HOST>"
    if is_retry:
        xml += "<RETRY>yes</RETRY>"
    return strict_b64(xml)


def command_line(base_path: str, command: str, params: str, as_stdin: bool) -> str:
    """``HEMHook#execute``'s command string: relative commands below ``base_path``, the
    arguments appended unless they go to stdin."""
    line = command if command.startswith("/") else f"{base_path}/{command}"
    if not as_stdin and params:
        line += f" {params}"
    return line


def argv_for(line: str) -> list[str]:
    if any(ch in SHELL_META for ch in line):
        return ["/bin/sh", "-c", line]
    return line.split()


async def run_command(
    line: str,
    *,
    stdin: str | None = None,
    timeout: float | None = None,
    max_output: int = 1 << 20,
    ssh_host: str | None = None,
    ssh: str = "ssh",
    kill_grace: float = KILL_GRACE,
) -> CommandResult:
    """Run ``line`` (over ``ssh`` on ``ssh_host`` when given) and collect its result."""
    if ssh_host is not None:
        spawn = f"{ssh} {ssh_host} {line}" if stdin is not None else f"{ssh} -n {ssh_host} {line}"
    else:
        spawn = line
    argv = argv_for(spawn)
    if not argv:
        return CommandResult(line, 255, b"", b"Internal error empty command")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return CommandResult(line, 255, b"", f"Internal error {reason} - {argv[0]}".encode())
    assert proc.stdout is not None and proc.stderr is not None
    feeder = asyncio.ensure_future(_feed(proc, (stdin or "").encode()))
    out, err = _Capture(max_output), _Capture(max_output)
    out_reader = asyncio.ensure_future(out.read(proc.stdout))
    err_reader = asyncio.ensure_future(err.read(proc.stderr))
    limit = timeout if timeout is not None and timeout > 0 else None
    try:
        await asyncio.wait_for(_exited(proc), limit)
    except TimeoutError:
        await _terminate(proc, kill_grace)
        for task in (feeder, out_reader, err_reader):
            task.cancel()
        await asyncio.gather(feeder, out_reader, err_reader, return_exceptions=True)
        return CommandResult(line, 255, b"", f"Timeout executing {line}".encode())
    except asyncio.CancelledError:
        await _terminate(proc, 0.0)
        raise
    # The command is gone; what it left in the pipes (or a descendant still holding them)
    # is read for a little while more, never forever.
    _done, pending = await asyncio.wait({out_reader, err_reader}, timeout=max(kill_grace, 1.0))
    for task in pending:
        task.cancel()
    feeder.cancel()
    await asyncio.gather(feeder, *pending, return_exceptions=True)
    if pending:  # a descendant keeps the pipes open: close our ends, leave it running
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    stdout, stderr = out.value(), err.value()
    code = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else 255
    return CommandResult(line, code, stdout, stderr)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
        proc.stdin.close()


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Until the command itself has exited. ``Process.wait`` also waits for its pipes to
    close, which a background descendant holding them may never do; the exit status is
    checked every 0.1 s besides."""
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while not waiter.done() and proc.returncode is None:
            await asyncio.wait({waiter}, timeout=0.1)
    finally:
        waiter.cancel()


class _Capture:
    """What a stream gives, of which the first ``limit`` bytes are kept; a note saying how
    much was dropped ends a truncated output. What was read stays available if reading
    is abandoned."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    async def read(self, stream: asyncio.StreamReader) -> None:
        while True:
            chunk = await stream.read(_CHUNK)
            if not chunk:
                return
            room = self.limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            self.dropped += max(0, len(chunk) - max(room, 0))

    def value(self) -> bytes:
        if self.dropped:
            return bytes(self.kept) + f"\n[oned-hem: {self.dropped} more bytes not kept]\n".encode()
        return bytes(self.kept)


async def _terminate(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM to the command's process group, SIGKILL if it is still there after
    ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_exited(proc), wait)
    if proc.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_exited(proc), 1.0)
