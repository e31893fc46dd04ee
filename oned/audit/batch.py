"""Records' lines built from their raw fields (``record.Raw``), chained and written.

The daemon's trail (when it writes the log itself) and the scribe (when it does) build
a batch the same way: one warm loop over the batch's records, the JSON pieces that
repeat from record to record (who, peer, method) cached, each line carrying the
SHA-256 of the one before, then one ``sink.write``.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any

from oned.audit import record as rec
from oned.audit.writer import Sink


class LineBuilder:
    """Builds and chains the lines of a batch of raw records (``store``)."""

    def __init__(self, masker: rec.Masker) -> None:
        self.masker = masker
        self._whos: dict[tuple[Any, ...], str] = {}
        self._peers: dict[str, str] = {}
        self._methods: dict[str, str] = {}

    def store(self, sink: Sink, raws: list[rec.Raw]) -> OSError | None:
        """Build the records' lines, chain them after ``sink``'s last one and write
        them with one ``write``; the error the write raised, if it did (the chain then
        goes on after the lost records: a gap in seq, which ``oned-audit verify`` reports)."""
        whos, peers, methods = self._whos, self._peers, self._methods
        stored_json, line, timestamp = self.masker.stored_json, rec.line, rec.timestamp
        prev = sink.last_hash
        seq = sink.seq
        lines = []
        for raw in raws:
            seq, when, req, user, uid, group, gid, peer, method, params, ending, ms = raw
            key = raw[3:7]
            who = whos.get(key) or _cache(whos, key, rec.who_json(user, uid, group, gid))
            peer_json = peers.get(peer) or _cache(peers, peer, rec.peer_json(peer))
            method_json = methods.get(method) or _cache(methods, method, rec.quote(method))
            text = line(seq, timestamp(when), req, who, peer_json, method_json,
                        stored_json(params), ending, ms, prev)  # fmt: skip
            prev = sha256(text).hexdigest()
            lines.append(text)
        try:
            sink.write(lines)
        except OSError as exc:
            sink.seq = seq
            return exc
        sink.seq, sink.last_hash = seq, prev
        return None


def in_order(raws: list[tuple[Any, ...]], after: int) -> list[rec.Raw]:
    """The records of ``raws`` (a journal's frames) past seq ``after``, once each, in
    seq order; raises ``TypeError`` for a frame that is not a record."""
    by_seq: dict[int, rec.Raw] = {}
    for raw in raws:
        if len(raw) != 12 or type(raw[0]) is not int:
            raise TypeError(f"not an audit record: {raw[:2]!r}...")
        if raw[0] > after:
            by_seq[raw[0]] = raw
    return [by_seq[seq] for seq in sorted(by_seq)]


def _cache(pieces: dict[Any, str], key: Any, piece: str) -> str:
    """Keep a JSON piece that repeats from call to call (bounded: peers and method
    names are the clients')."""
    if len(pieces) >= 4096:
        pieces.clear()
    pieces[key] = piece
    return piece
