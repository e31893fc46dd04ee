"""The audit journal: records of answered calls survive a crash before their batch
is written, are written once, and hold no secrets longer than their batch."""

from __future__ import annotations

import json
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from oned.audit import journal as journal_module
from oned.audit.journal import Journal
from oned.audit.settings import AuditSettings
from oned.audit.trail import WRITE_DELAY, AuditTrail
from oned.audit.verify import verify

HIDDEN = {"one.user.allocate": [2]}


def trail_at(var: Path, clock: Clock, **settings: Any) -> AuditTrail:
    settings.setdefault("fsync", -1)
    return AuditTrail.from_config(AuditSettings(mode="all", **settings), var, clock, HIDDEN,
                                  ["PASSWORD"])  # fmt: skip


def call(trail: AuditTrail, method: str, *params: Any, result: Any = None) -> None:
    entry = trail.begin(method, ("oneadmin:s3ssion", *params), "10.0.0.1:5000")
    trail.end(entry, result if result is not None else [True, 7, 0])


def lines(var: Path) -> list[dict[str, Any]]:
    path = var / "audit.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_records_of_a_crash_before_the_batch_are_written_at_start(tmp_path: Path) -> None:
    clock = Clock()
    first = trail_at(tmp_path, clock)
    call(first, "one.user.update", 3, 'A="1"', 1)
    first.flush()
    for n in range(3):
        call(first, "one.user.update", n, 'B="2"', 1)
    assert len(lines(tmp_path)) == 1  # the daemon dies here: no batch, no close
    second = trail_at(tmp_path, Clock())
    got = lines(tmp_path)
    assert [r["seq"] for r in got] == [1, 2, 3, 4]
    assert [r["params"][0] for r in got] == [3, 0, 1, 2]
    assert {k: got[1][k] for k in ("user", "uid", "method", "ok", "code")} == {
        "user": "oneadmin", "uid": -1, "method": "one.user.update", "ok": True, "code": 0,
    }  # fmt: skip
    call(second, "one.user.update", 9, "", 1)
    second.close()
    assert [r["seq"] for r in lines(tmp_path)] == [1, 2, 3, 4, 5]
    assert verify([tmp_path / "audit.log"]).ok
    assert Journal(tmp_path / ".audit.log.journal").recover() == []


def test_frames_already_in_the_log_are_not_written_twice(tmp_path: Path) -> None:
    clock = Clock()
    first = trail_at(tmp_path, clock)
    for n in range(3):
        call(first, "one.user.update", n, "", 1)
    path = tmp_path / ".audit.log.journal"
    frames = path.read_bytes()
    first.flush()
    path.write_bytes(frames)  # killed after the log write, before the journal was cleared
    second = trail_at(tmp_path, Clock())
    call(second, "one.user.update", 3, "", 1)
    second.close()
    assert [r["seq"] for r in lines(tmp_path)] == [1, 2, 3, 4]
    assert verify([tmp_path / "audit.log"]).ok


def test_a_torn_last_frame_is_left_out(tmp_path: Path) -> None:
    first = trail_at(tmp_path, Clock())
    for n in range(3):
        call(first, "one.user.update", n, "", 1)
    journal = first.journal
    assert journal is not None
    end = journal.pos
    path = tmp_path / ".audit.log.journal"
    data = bytearray(path.read_bytes())
    data[end - 3] ^= 0xFF  # the third frame's copy was cut short
    path.write_bytes(bytes(data))
    trail_at(tmp_path, Clock()).close()
    assert [r["params"][0] for r in lines(tmp_path)] == [0, 1]
    assert verify([tmp_path / "audit.log"]).ok


def test_a_full_journal_writes_the_records_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SIZE", 1000)  # halves of 500 bytes: 3 frames
    clock = Clock()
    trail = trail_at(tmp_path, clock)
    for n in range(6):
        call(trail, "one.user.update", n, "", 1)
    assert 0 < len(lines(tmp_path)) < 6  # written when the journal filled up
    call(trail, "one.user.update", 6, "x" * 1000, 1)  # bigger than a whole half
    assert [r["params"][0] for r in lines(tmp_path)] == list(range(7))
    assert verify([tmp_path / "audit.log"]).ok


def test_no_session_nor_hidden_parameter_is_stored_and_secrets_go_with_the_batch(
    tmp_path: Path,
) -> None:
    clock = Clock()
    trail = trail_at(tmp_path, clock)
    call(trail, "one.user.allocate", "bob", "b0bpassw0rd", "", [])
    call(trail, "one.user.update", 3, 'ROOT_PASSWORD="t0ps3cret"', 1)
    stored = (tmp_path / ".audit.log.journal").read_bytes()
    assert b"s3ssion" not in stored and b"b0bpassw0rd" not in stored
    clock.advance(WRITE_DELAY)
    stored = (tmp_path / ".audit.log.journal").read_bytes()
    assert stored.count(b"\0") == len(stored)  # zeroed once written
    got = lines(tmp_path)
    assert got[0]["params"] == ["bob", "****", "", []]
    assert got[1]["params"] == [3, 'ROOT_PASSWORD="****"', 1]


def test_parameters_marshal_cannot_store_are_kept_as_the_record_shows_them(
    tmp_path: Path,
) -> None:
    clock = Clock()
    trail = trail_at(tmp_path, clock)
    call(trail, "one.image.upload", xmlrpc.client.Binary(b"abc"), 1)
    trail.close()
    trail_at(tmp_path, Clock()).close()
    assert lines(tmp_path)[0]["params"] == ["<base64 3 bytes>", 1]


def test_fsync_zero_syncs_each_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmap

    synced: list[tuple[int, int]] = []
    real = mmap.mmap.flush

    class Tracked(mmap.mmap):
        def flush(self, *args: Any) -> None:
            synced.append(args)
            real(self, *args)

    monkeypatch.setattr(journal_module.mmap, "mmap", Tracked)
    trail = trail_at(tmp_path, Clock(), fsync=0)
    call(trail, "one.user.update", 1, "", 1)
    assert synced and synced[0][0] % mmap.ALLOCATIONGRANULARITY == 0
    trail.close()


def test_a_frame_with_fields_of_the_wrong_types_is_reported_not_replayed(
    tmp_path: Path,
) -> None:
    import marshal

    journal = Journal(tmp_path / ".audit.log.journal")
    assert journal.append(marshal.dumps(("one", 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)))
    journal.close()
    trail = trail_at(tmp_path, Clock())  # starts, writes nothing, goes on
    call(trail, "one.user.update", 1, "", 1)
    trail.close()
    assert [r["seq"] for r in lines(tmp_path)] == [1]
    assert verify([tmp_path / "audit.log"]).ok


def test_write_delay_sets_how_long_records_wait_for_their_batch(tmp_path: Path) -> None:
    clock = Clock()
    trail = trail_at(tmp_path, clock, write_delay=0.5)
    call(trail, "one.user.update", 1, "", 1)
    clock.advance(WRITE_DELAY)
    assert lines(tmp_path) == []
    clock.advance(0.5)
    assert [r["seq"] for r in lines(tmp_path)] == [1]
