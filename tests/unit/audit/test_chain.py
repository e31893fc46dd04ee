"""The chained file: continuity across rotation and restarts; verify's findings."""

from __future__ import annotations

import json
import os
from pathlib import Path

from twisted.internet.task import Clock

from oned.audit.cli import main as cli_main
from oned.audit.verify import chain_files, verify
from oned.audit.writer import GENESIS, ChainedFile, encode, line_hash, rotated_files


def put(writer: ChainedFile, n: int, pad: int = 0) -> None:
    """Chain ``n`` records as the trail does (seq, prev) and write them as one turn's."""
    batch = []
    for _ in range(n):
        writer.seq += 1
        record = {"seq": writer.seq, "method": "one.vm.action", "pad": "x" * pad}
        record["prev"] = writer.last_hash
        batch.append(encode(record))
        writer.last_hash = line_hash(batch[-1])
    writer.write(batch)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_chain_links_every_record(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    writer = ChainedFile(log, fsync=-1)
    put(writer, 5)
    got = lines(log)
    assert json.loads(got[0])["prev"] == GENESIS
    for before, after in zip(got, got[1:], strict=False):
        assert json.loads(after)["prev"] == line_hash(before)
    report = verify([log])
    assert report.ok and report.records == 5 and report.last_seq == 5
    assert oct(os.stat(log).st_mode & 0o777) == "0o600"


def test_restart_continues_the_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    put(ChainedFile(log, fsync=-1), 3)
    again = ChainedFile(log, fsync=-1)
    assert again.seq == 3
    put(again, 2)
    assert verify([log]).records == 5 and verify([log]).ok


def test_torn_tail_is_cut_at_start(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    put(ChainedFile(log, fsync=-1), 3)
    with log.open("ab") as handle:
        handle.write(b'{"seq":4,"method":"one.vm.all')  # a write cut by a crash
    assert not verify([log]).ok
    writer = ChainedFile(log, fsync=-1)
    assert writer.seq == 3
    put(writer, 1)
    assert verify([log]).ok and verify([log]).records == 4


def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    writer = ChainedFile(log, max_size=1000, fsync=-1)
    put(writer, 40, pad=100)
    rotated = rotated_files(log)
    assert len(rotated) >= 3
    assert all(p.stat().st_size <= 1000 for p in [*rotated, log])
    files = chain_files(log)
    assert files == [*rotated, log]
    report = verify(files)
    assert report.ok and report.records == 40
    first_of_second = json.loads(lines(rotated[1])[0])
    assert first_of_second["prev"] == line_hash(lines(rotated[0])[-1])
    # restart after a rotation with an empty current file: chain goes on from the newest
    log.unlink()
    put(ChainedFile(log, max_size=1000, fsync=-1), 1)
    assert verify(chain_files(log)).ok


def test_keep_drops_oldest_and_partial_verifies_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    put(ChainedFile(log, max_size=1000, keep=2, fsync=-1), 40, pad=100)
    assert len(rotated_files(log)) == 2
    assert not verify(chain_files(log)).ok  # no longer starts at the genesis hash
    assert verify(chain_files(log), partial=True).ok


def test_logrotate_rename_and_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    clock = Clock()
    writer = ChainedFile(log, clock, fsync=1.0)
    put(writer, 2)
    os.rename(log, tmp_path / "audit.log.1")  # logrotate "create" mode
    put(writer, 1)  # still goes to the renamed file until the timer notices
    clock.advance(1.0)
    put(writer, 2)
    assert len(lines(tmp_path / "audit.log.1")) == 3 and len(lines(log)) == 2
    assert verify(chain_files(log)).ok
    # copytruncate: copy away, truncate in place; O_APPEND writes land at the new end
    (tmp_path / "audit.log.2").write_bytes(log.read_bytes())
    os.truncate(log, 0)
    put(writer, 2)
    assert len(lines(log)) == 2
    assert verify(chain_files(log)).ok
    writer.close()


def test_fsync_runs_on_the_timer(tmp_path: Path) -> None:
    clock = Clock()
    writer = ChainedFile(tmp_path / "a.log", clock, fsync=0.5)
    put(writer, 3)
    assert len(clock.getDelayedCalls()) == 1  # one timer for the batch
    clock.advance(0.5)
    assert not clock.getDelayedCalls()
    writer.close()


def chain_of(tmp_path: Path, n: int = 6) -> Path:
    log = tmp_path / "audit.log"
    put(ChainedFile(log, fsync=-1), n)
    return log


def test_verify_names_a_removed_record(tmp_path: Path) -> None:
    log = chain_of(tmp_path)
    got = lines(log)
    log.write_bytes(b"\n".join(got[:2] + got[3:]) + b"\n")
    report = verify([log])
    assert report.problem is not None
    assert (report.problem.line, report.records) == (3, 2)
    assert report.problem.expected == line_hash(got[1])
    assert report.problem.found == line_hash(got[2])
    assert "audit.log:2" in report.problem.what


def test_verify_names_an_altered_record(tmp_path: Path) -> None:
    log = chain_of(tmp_path)
    got = lines(log)
    got[3] = got[3].replace(b"one.vm.action", b"one.vm.info")
    log.write_bytes(b"\n".join(got) + b"\n")
    problem = verify([log]).problem
    assert problem is not None and problem.line == 5
    assert problem.found == line_hash(lines(chain_of(tmp_path / "x"))[3])


def test_verify_names_a_corrupted_line(tmp_path: Path) -> None:
    log = chain_of(tmp_path)
    got = lines(log)
    got[2] = b"\x00garbage{"
    log.write_bytes(b"\n".join(got) + b"\n")
    problem = verify([log]).problem
    assert problem is not None and problem.line == 3
    assert "corrupted line" in problem.what


def test_verify_names_a_missing_file_and_a_forged_seq(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    put(ChainedFile(log, max_size=600, fsync=-1), 20, pad=100)
    rotated = rotated_files(log)
    rotated[1].unlink()
    problem = verify(chain_files(log)).problem
    assert problem is not None and problem.path == rotated[2] and problem.line == 1
    # a record whose hash link holds but whose seq jumps (a record the daemon lost)
    other = tmp_path / "b" / "audit.log"
    writer = ChainedFile(other, fsync=-1)
    put(writer, 2)
    writer.seq += 1
    put(writer, 1)
    problem = verify([other]).problem
    assert problem is not None and problem.line == 3 and "seq" in problem.what
    assert (problem.expected, problem.found) == ("3", "4")


def test_cli_exit_codes(tmp_path: Path, capsys: object) -> None:
    log = chain_of(tmp_path)
    assert cli_main(["verify", str(log)]) == 0
    got = lines(log)
    log.write_bytes(b"\n".join(got[:1] + got[2:]) + b"\n")
    assert cli_main(["verify", str(log)]) == 1
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "OK: 6 records" in out and "BROKEN after 1 good records" in out
    assert f"{log}:2: broken link" in out and "expected: " in out and "found: " in out
    assert cli_main(["verify", str(tmp_path / "none.log")]) == 2


def test_torn_tail_longer_than_the_read_window(tmp_path: Path, monkeypatch: object) -> None:
    import oned.audit.writer as writer_module

    monkeypatch.setattr(writer_module, "TAIL_BYTES", 64)  # type: ignore[attr-defined]
    log = tmp_path / "audit.log"
    put(ChainedFile(log, fsync=-1), 3)
    whole = log.stat().st_size
    with log.open("ab") as handle:
        handle.write(b"{" + b"x" * 500)  # a torn record many windows long
    writer = ChainedFile(log, fsync=-1)
    assert log.stat().st_size == whole and writer.seq == 3
    put(writer, 1)
    assert verify([log]).ok


def test_logrotate_numbering_newest_first(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    writer = ChainedFile(log, fsync=-1)
    put(writer, 2)
    writer.close()
    os.rename(log, tmp_path / "audit.log.2")  # logrotate: .2 older than .1
    writer = ChainedFile(log, fsync=-1)
    put(writer, 2)
    writer.close()
    os.rename(log, tmp_path / "audit.log.1")
    log.write_bytes(b"")  # logrotate "create", then oned restarts before any call
    writer = ChainedFile(log, fsync=-1)
    assert writer.seq == 4
    put(writer, 1)
    files = chain_files(log)
    assert [f.name for f in files] == ["audit.log.2", "audit.log.1", "audit.log"]
    assert verify(files).ok and verify(files).records == 5


def test_anchor_detects_a_cut_tail(tmp_path: Path, capsys: object) -> None:
    log = chain_of(tmp_path)
    noted = verify([log]).last_hash
    assert cli_main(["verify", "--anchor", noted, str(log)]) == 0
    got = lines(log)
    log.write_bytes(b"\n".join(got[:-2]) + b"\n")  # the newest records cut off
    assert verify([log]).ok  # the chain alone cannot tell
    assert cli_main(["verify", "--anchor", noted, str(log)]) == 1
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "anchor not found" in out and noted in out
