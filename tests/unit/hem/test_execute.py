"""Running hook commands: exit codes, missing commands, timeouts, huge outputs, stdin."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

from lxml import etree

from oned.hem.execute import (
    CommandResult,
    argv_for,
    command_line,
    encode64,
    response_body,
    run_command,
)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_command_line_and_argv() -> None:
    assert command_line("/hooks", "log.sh", "a b", False) == "/hooks/log.sh a b"
    assert command_line("/hooks", "/bin/x", "a b", True) == "/bin/x"
    assert command_line("/hooks", "x", "", False) == "/hooks/x"
    assert argv_for("/bin/echo a  b") == ["/bin/echo", "a", "b"]
    assert argv_for("/bin/echo a > /tmp/f") == ["/bin/sh", "-c", "/bin/echo a > /tmp/f"]


def test_success_and_output(tmp_path: Path) -> None:
    cmd = script(tmp_path, "ok", 'echo "out $1 $2"; echo err >&2')
    result = run(run_command(f"{cmd} A B"))
    assert result == CommandResult(f"{cmd} A B", 0, b"out A B\n", b"err\n")


def test_non_zero_exit(tmp_path: Path) -> None:
    cmd = script(tmp_path, "bad", "echo nope >&2; exit 3")
    result = run(run_command(cmd))
    assert (result.code, result.stderr) == (3, b"nope\n")


def test_killed_by_signal_is_255(tmp_path: Path) -> None:
    cmd = script(tmp_path, "sig", "kill -9 $$")
    assert run(run_command(cmd)).code == 255


def test_missing_command(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothere")
    result = run(run_command(f"{missing} arg"))
    assert result.code == 255
    assert result.stderr == f"Internal error No such file or directory - {missing}".encode()
    not_exec = tmp_path / "plain"
    not_exec.write_text("echo\n")
    result = run(run_command(str(not_exec)))
    assert result.code == 255 and b"Permission denied" in result.stderr


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    cmd = script(tmp_path, "hang", f"sleep 60 & echo $! > {marker}; echo started; wait")
    start = time.monotonic()
    result = run(run_command(cmd, timeout=1, kill_grace=0.5))
    assert time.monotonic() - start < 5
    assert result == CommandResult(cmd, 255, b"", f"Timeout executing {cmd}".encode())
    child = int(marker.read_text())
    time.sleep(0.1)
    try:
        os.kill(child, 0)
        alive = Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
    except ProcessLookupError:
        alive = False
    assert not alive, "the hook's children die with it"


def test_timeout_escalates_to_kill(tmp_path: Path) -> None:
    cmd = script(tmp_path, "stubborn", "trap '' TERM; while :; do sleep 0.1; done")
    start = time.monotonic()
    result = run(run_command(cmd, timeout=0.5, kill_grace=0.5))
    assert result.code == 255 and time.monotonic() - start < 5


def test_huge_output_is_truncated(tmp_path: Path) -> None:
    cmd = script(tmp_path, "big", "head -c 20000000 /dev/zero; head -c 3000000 /dev/zero >&2")
    result = run(run_command(cmd, max_output=1000))
    assert result.code == 0
    assert result.stdout.startswith(b"\0" * 1000)
    assert result.stdout[1000:] == b"\n[oned-hem: 19999000 more bytes not kept]\n"
    assert len(result.stderr) < 1100


def test_arguments_on_stdin(tmp_path: Path) -> None:
    cmd = script(tmp_path, "cat", "cat")
    payload = "x" * 500_000  # larger than a pipe buffer
    result = run(run_command(cmd, stdin=payload))
    assert result.stdout == payload.encode()
    # without stdin data the command reads an empty, closed stdin
    assert run(run_command(cmd)).stdout == b""


def test_remote_through_ssh(tmp_path: Path) -> None:
    log = tmp_path / "ssh.log"
    fake_ssh = script(
        tmp_path, "ssh", f'printf "%s\\n" "$*" >> {log}; shift; [ "$1" = node1 ] && shift; "$@"'
    )
    result = run(run_command("/bin/echo hi", ssh_host="node1", ssh=fake_ssh))
    assert result.code == 0 and result.command == "/bin/echo hi"
    assert log.read_text() == "-n node1 /bin/echo hi\n"


def test_response_body() -> None:
    result = CommandResult("/bin/x a", 1, b"o" * 50, b"")
    body = base64.b64decode(response_body("a", result, "node1", True, True)).decode()
    root = etree.fromstring(f"<R>{body}</R>".encode())
    assert [c.tag for c in root] == ["ARGUMENTS", "EXECUTION_RESULT", "REMOTE_HOST", "RETRY"]
    assert root.findtext("EXECUTION_RESULT/CODE") == "1"
    assert root.findtext("EXECUTION_RESULT/COMMAND") == "/bin/x a"
    assert base64.b64decode(root.findtext("EXECUTION_RESULT/STDOUT") or "") == b"o" * 50
    assert root.findtext("EXECUTION_RESULT/STDERR") == ""
    plain = base64.b64decode(response_body("", result, "node1", False, False)).decode()
    assert "REMOTE_HOST" not in plain and "RETRY" not in plain


def test_encode64_is_rubys() -> None:
    assert encode64(b"") == ""
    lines = encode64(b"a" * 100).split("\n")
    assert [len(x) for x in lines] == [60, 60, 16, 0]


def test_a_background_child_holding_the_output_does_not_hold_the_result(tmp_path: Path) -> None:
    pid = tmp_path / "pid"
    cmd = script(tmp_path, "bg", f"sleep 30 & echo $! > {pid}; echo started")
    start = time.monotonic()
    try:
        result = run(run_command(cmd, kill_grace=0.5))
        assert time.monotonic() - start < 5
        assert (result.code, result.stdout) == (0, b"started\n")
    finally:
        os.kill(int(pid.read_text()), 9)
