"""The audit scribe: the daemon hands it the journal's frames in batches and forgets
them only once it says they are in the log; whenever it is gone (killed, dead, a half
behind, the daemon stopping) the daemon writes what the log lacks, once, and goes on."""

from __future__ import annotations

import json
import marshal
import sys
from pathlib import Path

import pytest

from oned.audit import journal as journal_module
from oned.audit.batch import LineBuilder
from oned.audit.journal import Journal, frames
from oned.audit.record import Masker
from oned.audit.scribe import LENGTH, Scribe
from oned.audit.settings import AuditSettings
from oned.audit.trail import SCRIBE_RESTART, WRITE_DELAY, AuditTrail
from oned.audit.verify import verify
from oned.audit.writer import ChainedFile
from oned.testing.fake_process import FakeProcess, FakeProcessReactor


def scribed(var: Path, reactor: FakeProcessReactor) -> AuditTrail:
    settings = AuditSettings(mode="all", fsync=-1)
    hidden = {"one.user.allocate": [2]}
    return AuditTrail.from_config(settings, var, reactor, hidden, ["PASSWORD"], scribe=reactor)


def call(trail: AuditTrail, n: int) -> None:
    entry = trail.begin("one.user.update", ("oneadmin:s3ssion", n, 'A="1"', 1), "10.0.0.1:5000")
    trail.end(entry, [True, n, 0])


def logged(var: Path) -> list[int]:
    path = var / "audit.log"
    if not path.exists():
        return []
    return [json.loads(x)["params"][0] for x in path.read_text().splitlines()]


def batches(process: FakeProcess) -> list[bytes]:
    data, found = process.stdin, []
    while data:
        (size,) = LENGTH.unpack_from(data)
        found.append(data[LENGTH.size : LENGTH.size + size])
        data = data[LENGTH.size + size :]
    return found


class Writer:
    """Stands in for the scribe process: the real ``Scribe`` code writes the batches
    the fake child received, then acks them."""

    def __init__(self, var: Path) -> None:
        self.scribe = Scribe(ChainedFile(var / "audit.log", fsync=-1), LineBuilder(Masker({}, [])))
        self.done = 0

    def write_and_ack(self, process: FakeProcess) -> None:
        for batch in batches(process)[self.done :]:
            self.scribe.write(batch)
            self.done += 1
            process.send_stdout(b"%d\n" % self.scribe.sink.seq)


def test_the_scribe_is_started_with_the_log_and_the_daemon_lets_go_of_it(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    trail = scribed(tmp_path, reactor)
    process = reactor.last_process
    assert process.args[:3] == [sys.executable, "-m", "oned.audit.scribe"]
    config = json.loads(process.args[3])
    assert config["path"] == str(tmp_path / "audit.log")
    assert config["journal"] == str(tmp_path / ".audit.log.journal")
    assert config["secret_attrs"] == ["PASSWORD"]
    assert trail.sink is None and trail.link is not None


def test_one_batch_at_a_time_forgotten_once_acked(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    trail = scribed(tmp_path, reactor)
    process = reactor.last_process
    writer = Writer(tmp_path)
    for n in range(3):
        call(trail, n)
    assert batches(process) == []  # the batch waits WRITE_DELAY
    reactor.advance(WRITE_DELAY)
    sent = batches(process)
    assert [raw[9][0] for raw in frames(sent[0])] == [0, 1, 2]
    assert not any(b"s3ssion" in b for b in sent)
    call(trail, 3)
    reactor.advance(WRITE_DELAY * 3)
    assert len(batches(process)) == 1  # the first is not written yet
    journal = trail.journal
    assert journal is not None
    assert len(journal.recover()) == 4  # the unacked frames are still kept
    writer.write_and_ack(process)
    assert len(journal.recover()) == 1  # the written half is zeroed
    reactor.advance(WRITE_DELAY)
    writer.write_and_ack(process)
    assert logged(tmp_path) == [0, 1, 2, 3]
    assert journal.recover() == []
    assert verify([tmp_path / "audit.log"]).ok


@pytest.mark.parametrize("wrote_it", [False, True])
def test_a_scribe_that_dies_loses_nothing_and_is_replaced(tmp_path: Path, wrote_it: bool) -> None:
    reactor = FakeProcessReactor()
    trail = scribed(tmp_path, reactor)
    process = reactor.last_process
    for n in range(3):
        call(trail, n)
    reactor.advance(WRITE_DELAY)
    call(trail, 3)
    if wrote_it:  # it wrote the batch and died before its ack
        Writer(tmp_path).scribe.write(batches(process)[0])
    process.exit(signal=9)
    assert trail.sink is not None  # the daemon writes the log again
    assert logged(tmp_path) == [0, 1, 2, 3]
    call(trail, 4)
    reactor.advance(WRITE_DELAY)
    assert logged(tmp_path) == [0, 1, 2, 3, 4]
    reactor.advance(SCRIBE_RESTART)
    assert len(reactor.processes) == 2 and trail.sink is None
    call(trail, 5)
    reactor.advance(WRITE_DELAY)
    Writer(tmp_path).write_and_ack(reactor.last_process)
    assert logged(tmp_path) == [0, 1, 2, 3, 4, 5]
    assert verify([tmp_path / "audit.log"]).ok


def test_close_kills_the_scribe_and_writes_what_it_had_not(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    trail = scribed(tmp_path, reactor)
    process = reactor.last_process
    writer = Writer(tmp_path)
    for n in range(2):
        call(trail, n)
    reactor.advance(WRITE_DELAY)
    writer.write_and_ack(process)
    call(trail, 2)
    reactor.advance(WRITE_DELAY)  # sent, not written
    call(trail, 3)  # not even sent
    writer.scribe.sink.close()
    trail.close()
    assert process.signals == ["KILL"]
    assert logged(tmp_path) == [0, 1, 2, 3]
    assert verify([tmp_path / "audit.log"]).ok
    reactor.advance(SCRIBE_RESTART * 2)
    assert len(reactor.processes) == 1  # a closed trail starts no scribe


def test_a_scribe_a_whole_half_behind_is_replaced_by_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SIZE", 2000)  # halves of 1000 bytes
    reactor = FakeProcessReactor()
    trail = scribed(tmp_path, reactor)
    process = reactor.last_process
    call(trail, 0)
    reactor.advance(WRITE_DELAY)  # in flight, never acked: the scribe hangs
    n = 1
    while not process.signals:
        call(trail, n)
        n += 1
        assert n < 50
    assert process.signals == ["KILL"]
    assert logged(tmp_path) == list(range(n - 1))  # the last one waits for its batch
    reactor.advance(WRITE_DELAY)
    assert logged(tmp_path) == list(range(n))
    assert verify([tmp_path / "audit.log"]).ok


def test_a_scribe_that_cannot_start_leaves_the_daemon_writing(tmp_path: Path) -> None:
    reactor = FakeProcessReactor()
    reactor.expect_spawn(error=OSError("no such interpreter"))
    trail = scribed(tmp_path, reactor)
    assert trail.link is None and trail.sink is not None
    call(trail, 0)
    reactor.advance(WRITE_DELAY)
    assert logged(tmp_path) == [0]
    reactor.advance(SCRIBE_RESTART)
    assert trail.link is not None  # tried again


def test_the_journal_hands_out_one_half_while_filling_the_other(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", size=4096)
    assert journal.append(marshal.dumps((1,)))
    half, data = journal.take()
    assert (half, [f[0] for f in frames(data)]) == (0, [1])
    assert journal.append(marshal.dumps((2,)))
    assert sorted(f[0] for f in journal.recover()) == [1, 2]
    journal.release(0)
    assert [f[0] for f in journal.recover()] == [2]
    half, data = journal.take()
    assert half == 1 and journal.active == 0
    journal.clear()
    assert journal.recover() == []
