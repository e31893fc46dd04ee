"""The dispatcher's records through the real request manager (OnedHarness)."""

from __future__ import annotations

import json
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from oned.audit.verify import verify
from oned.config import ConfigError
from oned.testing.rpc import OnedHarness, result_of


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Iterator[OnedHarness]:
    h = OnedHarness(getattr(request, "param", ""))
    yield h
    h.close()


def records(h: OnedHarness) -> list[dict[str, Any]]:
    path = h.config.locations.var / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def body(h: OnedHarness, payload: bytes, peer: str = "10.0.0.7:4444") -> Any:
    return result_of(Deferred.fromCoroutine(h.manager.handle_body(payload, peer)))


def test_writes_mode_records_changes_and_refusals_only(harness: OnedHarness) -> None:
    h = harness
    uid = h.ok("one.user.allocate", "bob", "bobpw", "", [])
    h.ok("one.user.info", uid)
    h.ok("one.userpool.info")
    h.call("one.user.passwd", uid, "newsecret")
    assert h.raw("one.user.info", "mallory:guess", 0)[0] is False
    assert h.call("one.vm.info", 0, session="bob:newsecret")[0] is False  # no such VM
    assert h.call("one.user.info", 0, session="bob:newsecret")[0] is False  # not authorized
    got = records(h)
    assert [r["method"] for r in got] == [
        "one.user.allocate",
        "one.user.passwd",
        "one.user.info",
        "one.user.info",
    ]
    alloc, passwd, unauth, denied = got
    assert alloc["params"] == ["bob", "****", "", []]
    assert (alloc["ok"], alloc["code"], alloc["id"]) == (True, 0, uid)
    assert (alloc["user"], alloc["uid"], alloc["group"], alloc["gid"]) == (
        "oneadmin", 0, "oneadmin", 0,
    )  # fmt: skip
    assert passwd["params"] == [uid, "****"] and "id" not in passwd
    assert (unauth["user"], unauth["uid"], unauth["gid"], unauth["group"]) == (
        "mallory", -1, -1, None,
    )  # fmt: skip
    assert unauth["code"] == 256 and "authenticated" in unauth["error"]
    assert (denied["user"], denied["code"]) == ("bob", 512)
    for r in got:
        assert (r["addr"], r["port"]) == ("127.0.0.1", "1")
        assert r["time"].endswith("Z") and r["ms"] >= 0 and r["req"] > 0
        assert list(r)[:3] == ["seq", "time", "req"] and list(r)[-2:] == ["ms", "prev"]
    assert [r["seq"] for r in got] == [1, 2, 3, 4]
    text = (h.config.locations.var / "audit.log").read_text()
    assert "bobpw" not in text and "newsecret" not in text and "guess" not in text
    assert verify([h.config.locations.var / "audit.log"]).ok


@pytest.mark.parametrize("harness", ['AUDIT = [ MODE = "all" ]'], indirect=True)
def test_all_mode_records_reads_faults_and_bad_bodies(harness: OnedHarness) -> None:
    h = harness
    h.ok("one.userpool.info")
    with pytest.raises(xmlrpc.client.Fault):
        h.call("one.nothing.here")
    with pytest.raises(xmlrpc.client.Fault):
        h.call("one.user.info", "not-an-int")
    body(h, b"<methodCall><oops")
    calls = [("one.user.info", [h.admin, 0]), ("one.vm.allocate", [h.admin, "CPU=-1"])]
    multi = [{"methodName": m, "params": p} for m, p in calls]
    body(h, xmlrpc.client.dumps((multi,), "system.multicall").encode())
    got = records(h)
    assert [(r["method"], r["ok"], r["code"]) for r in got] == [
        ("one.userpool.info", True, 0),
        ("one.nothing.here", False, -506),
        ("one.user.info", False, -501),
        ("", False, -503),
        ("one.user.info", True, 0),
        ("one.vm.allocate", False, 0x2000),
    ]
    assert got[3]["addr"] == "10.0.0.7" and got[3]["user"] is None
    assert (
        got[-1]["error"] == "[one.vm.allocate] MEMORY attribute must be a positive integer value."
    )
    assert verify([h.config.locations.var / "audit.log"]).ok


@pytest.mark.parametrize("harness", ['AUDIT = [ MODE = "off" ]'], indirect=True)
def test_off_mode_writes_nothing(harness: OnedHarness) -> None:
    harness.ok("one.user.allocate", "carol", "pw", "", [])
    harness.raw("one.user.info", "mallory:guess", 0)
    assert not (harness.config.locations.var / "audit.log").exists()


@pytest.mark.parametrize(
    "harness", ['VM_ENCRYPTED_ATTR = "CONTEXT/SECRET_CODE"\nAUDIT = [ PATH = "x/a.log" ]'],
    indirect=True,
)  # fmt: skip
def test_encrypted_attributes_masked_and_path_setting(harness: OnedHarness) -> None:
    h = harness
    tmpl = 'NAME = t\nCPU = 1\nMEMORY = 8\nCONTEXT = [ SECRET_CODE = "4242", PASSWORD = "pw1" ]'
    h.ok("one.template.allocate", tmpl)
    text = (h.config.locations.var / "x" / "a.log").read_text()
    assert "4242" not in text and "pw1" not in text
    assert 'SECRET_CODE = \\"****\\"' in text and "MEMORY = 8" in text


def test_syslog_destination_chains_the_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    import syslog

    sent: list[tuple[int, str]] = []
    opened: list[tuple[str, int, int]] = []
    monkeypatch.setattr(syslog, "openlog", lambda *a: opened.append(a))
    monkeypatch.setattr(syslog, "syslog", lambda prio, msg: sent.append((prio, msg)))
    monkeypatch.setattr(syslog, "closelog", lambda: None)
    h = OnedHarness('AUDIT = [ DESTINATION = "syslog", FACILITY = "local3" ]')
    try:
        h.ok("one.user.allocate", "dave", "davepw", "", [])
        h.raw("one.user.info", "eve:nope", 0)
        assert opened == [("oned-audit", 0, syslog.LOG_LOCAL3)]
        assert [p for p, _ in sent] == [syslog.LOG_INFO, syslog.LOG_INFO]
        first, second = (json.loads(m) for _, m in sent)
        assert first["prev"] == "0" * 64 and first["params"] == ["dave", "****", "", []]
        assert second["user"] == "eve" and second["seq"] == 2
        import hashlib

        assert second["prev"] == hashlib.sha256(sent[0][1].encode()).hexdigest()
        assert not (h.config.locations.var / "audit.log").exists()
    finally:
        h.close()


def test_unwritable_path_stops_the_start_with_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="Cannot open the audit log"):
        OnedHarness(f'AUDIT = [ PATH = "{blocker}/audit.log" ]')


def _trail(tmp_path: Path, clock: Any, mode: str = "all") -> Any:
    from oned.audit.settings import AuditSettings
    from oned.audit.trail import AuditTrail

    return AuditTrail.from_config(AuditSettings(mode=mode, fsync=-1), tmp_path, clock, {}, [])


def test_records_wait_in_the_journal_and_are_written_in_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twisted.internet.task import Clock

    from oned.audit import writer
    from oned.audit.journal import Journal
    from oned.audit.trail import WRITE_DELAY

    writes: list[int] = []
    real_write = writer._write
    monkeypatch.setattr(writer, "_write", lambda fd, data: writes.append(len(data))
                        or real_write(fd, data))  # fmt: skip
    clock = Clock()
    trail = _trail(tmp_path, clock)
    for n in range(3):  # three calls end
        entry = trail.begin("one.user.info", ("s", n), f"10.0.0.{n}:1")
        trail.end(entry, [True, "<USER/>", 0])
    assert writes == [] and not (tmp_path / "audit.log").read_bytes()
    # ... but they are in the journal, which a kill -9 cannot undo
    seen = Journal(tmp_path / ".audit.log.journal").recover()
    assert [(raw[0], raw[7], raw[9]) for raw in seen] == [
        (1, "10.0.0.0:1", (0,)), (2, "10.0.0.1:1", (1,)), (3, "10.0.0.2:1", (2,)),
    ]  # fmt: skip
    clock.advance(WRITE_DELAY)  # the batch: one write, then the journal is cleared
    assert len(writes) == 1
    got = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(r["seq"], r["params"], r["addr"]) for r in got] == [
        (1, [0], "10.0.0.0"), (2, [1], "10.0.0.1"), (3, [2], "10.0.0.2"),
    ]  # fmt: skip
    assert Journal(tmp_path / ".audit.log.journal").recover() == []
    assert not clock.getDelayedCalls() or all("flush" not in repr(c)
                                              for c in clock.getDelayedCalls())  # fmt: skip
    assert verify([tmp_path / "audit.log"]).ok


def test_a_method_named_like_a_peer_is_recorded_as_itself(tmp_path: Path) -> None:
    from twisted.internet.task import Clock

    trail = _trail(tmp_path, Clock())
    for method in ("one.user.info", "10.0.0.9:7"):
        trail.end(trail.begin(method, ("s",), "10.0.0.9:7"), [True, "", 0])
    trail.flush()
    got = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(r["method"], r["addr"], r["port"]) for r in got] == [
        ("one.user.info", "10.0.0.9", "7"), ("10.0.0.9:7", "10.0.0.9", "7"),
    ]  # fmt: skip


def test_a_failed_write_answers_anyway_and_shows_as_missing_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twisted.internet.task import Clock

    from oned.audit import writer

    trail = _trail(tmp_path, Clock())
    trail.end(trail.begin("one.user.info", ("s", 1), "h:1"), [True, "", 0])
    trail.flush()
    real_write = writer._write

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "_write", full)
    trail.end(trail.begin("one.user.info", ("s", 2), "h:1"), [True, "", 0])
    trail.flush()
    assert trail.failed
    monkeypatch.setattr(writer, "_write", real_write)
    trail.end(trail.begin("one.user.info", ("s", 3), "h:1"), [True, "", 0])
    trail.flush()
    assert not trail.failed
    got = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [r["seq"] for r in got] == [1, 3]
    report = verify([tmp_path / "audit.log"])
    assert not report.ok and report.problem is not None
    assert "records missing" in report.problem.what
