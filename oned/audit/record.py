"""One call's audit record: who, from where, what (secrets masked), how it ended.

A record is a JSON object whose keys come in a fixed order::

    {"seq": 7, "time": "2026-12-01T12:00:00.123456Z", "req": 12,
     "user": "oneadmin", "uid": 0, "group": "oneadmin", "gid": 0,
     "addr": "127.0.0.1", "port": "53422", "method": "one.user.allocate",
     "params": ["bob", "****", "", []], "ok": true, "code": 0, "id": 5,
     "ms": 0.41, "prev": "<sha256 hex of the previous record's line>"}

The session (the first parameter) is never written: ``user`` names who authenticated,
or the name that failed to (then ``uid``/``gid`` are -1 and ``group`` is null).
Parameters oned hides in its logs (the dispatcher's table) are ``****``, and so is every
value of a template attribute named by an ``*_ENCRYPTED_ATTR`` setting or holding a
password, in both the ``NAME = value`` and the XML syntax. A failed call carries its
``error`` text; XML-RPC faults carry their fault code.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import xmlrpc.client
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

MASK = "****"
#: Longest string parameter kept whole; longer ones keep this much and a length note.
MAX_STRING = 65536
#: Longest parameter array (as JSON) kept; a longer one is replaced by its size and hash.
MAX_PARAMS = 1 << 20

#: Attribute names masked whatever oned.conf says (oned's own secret attributes).
#: (A name matches as the end of an attribute name: ROOT_PASSWORD, CEPH_SECRET, ...)
ALWAYS_SECRET = (
    "PASSWORD", "PASSWD", "PASSPHRASE", "PRIVATE_KEY", "SECRET", "SECRET_ACCESS_KEY", "TOKEN",
    "VCENTER_PASS",
)  # fmt: skip

#: Method name endings that only read (recorded in MODE "all" only).
READ_ONLY_ENDINGS = frozenset(
    "info infoextended infoset monitoring accounting showback raftstatus version config "
    "sqlquery".split()
)

#: Methods whose successful answer is the id of a new object.
CREATORS = frozenset(
    "allocate clone instantiate addrule reserve disksaveas allocate_ar import".split()
)


def is_read_only(method: str) -> bool:
    """A call that changes nothing: the info/pool readers and the XML-RPC built-ins."""
    if method.startswith("system."):
        return True
    return method.rpartition(".")[2] in READ_ONLY_ENDINGS


class Masker:
    """Hides secrets in a call's parameters."""

    def __init__(self, hidden: Mapping[str, Iterable[int]], secret_attrs: Iterable[str]) -> None:
        self._hidden = {m: frozenset(p) for m, p in hidden.items()}
        #: The methods with a parameter oned hides (``stored`` masks it).
        self.hiding = frozenset(self._hidden)
        names = {a.rpartition("/")[2].strip().upper() for a in secret_attrs}
        names.update(ALWAYS_SECRET)
        names.discard("")
        alt = "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))
        # NAME = "quoted" | NAME = bare (template syntax), <NAME>...</NAME> (XML syntax)
        self._tmpl = re.compile(rf'(?i)\b(\w*(?:{alt}))(\s*=\s*)("(?:[^"\\]|\\.)*"?|[^\s,\]\n]*)')
        self._names = re.compile(f"(?i){alt}")
        self._xml = re.compile(rf"(?is)<(\w*(?:{alt}))>(.*?)</\1>")

    def params(self, method: str, params: tuple[Any, ...]) -> list[Any]:
        """``params`` without the session, hidden positions and secret values masked."""
        result: list[Any] = json.loads(self.params_json(method, params))
        return result

    def params_json(self, method: str, params: tuple[Any, ...]) -> str:
        """``params`` as the record's JSON array (the session left out)."""
        return self.stored_json(self.stored(method, params))

    def stored(self, method: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """What the journal keeps of ``params``: all but the session, the hidden
        ones ``****`` (template secrets are masked when the record is built)."""
        rest = params[1:]
        hidden = self._hidden.get(method)
        if hidden is not None:
            rest = tuple(MASK if i in hidden else v for i, v in enumerate(rest, 1))
        return rest

    def stored_json(self, stored: tuple[Any, ...]) -> str:
        """``stored`` parameters as the record's JSON array, written directly for the
        ints and strings nearly every call has; past MAX_PARAMS only its size and hash."""
        parts = []
        for value in stored:
            kind = type(value)
            if kind is str:
                parts.append(_quote(self.text(value)))
            elif kind is int:
                parts.append(str(value))
            elif kind is bool:
                parts.append("true" if value else "false")
            else:
                parts.append(_json(self.value(value)))
        args = f"[{','.join(parts)}]"
        if len(args) > MAX_PARAMS:
            digest = hashlib.sha256(args.encode("ascii")).hexdigest()
            args = f'["[{len(args)} characters of parameters, sha256 {digest}]"]'
        return args

    def value(self, value: Any) -> Any:
        """A JSON-ready copy of one parameter with secret attributes masked."""
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {str(k): self.value(v) for k, v in value.items()}
        if isinstance(value, xmlrpc.client.Binary):
            return f"<base64 {len(value.data)} bytes>"
        return self.text(str(value))

    def text(self, text: str) -> str:
        if self._names.search(text):
            if "=" in text:
                text = self._tmpl.sub(_mask_assignment, text)
            if "<" in text:
                text = self._xml.sub(_mask_element, text)
        if len(text) > MAX_STRING:
            text = f"{text[:MAX_STRING]}...[{len(text) - MAX_STRING} more characters]"
        return text


def _mask_assignment(match: re.Match[str]) -> str:
    return f'{match.group(1)}{match.group(2)}"{MASK}"'


def _mask_element(match: re.Match[str]) -> str:
    return f"<{match.group(1)}>{MASK}</{match.group(1)}>"


_second: list[Any] = [None, ""]


def timestamp(seconds: float) -> str:
    """UTC, microseconds, ``Z`` (the seconds part formatted once per second)."""
    whole = int(seconds)
    if whole != _second[0]:
        _second[0] = whole
        _second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((seconds - whole) * 1e6):06d}Z"


_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def line(
    seq: int, when: str, req: int, who: str, peer: str, method: str, args: str,
    ending: Outcome, ms: float, prev: str,
) -> bytes:  # fmt: skip
    """The record's JSON line (keys in the documented order), built without a dict:
    this runs once per call. ``who``, ``peer`` and ``method`` come from ``who_json``,
    ``peer_json`` and ``quote`` (cached by the trail), ``args`` from ``stored_json``."""
    ok, code, oid, error = ending
    tail = f',"id":{oid}' if oid is not None else ""
    if error is not None:
        tail += f',"error":{_quote(error)}'
    return (
        f'{{"seq":{seq},"time":"{when}","req":{req},{who},{peer},"method":{method},'
        f'"params":{args},"ok":{"true" if ok else "false"},"code":{code}'
        f'{tail},"ms":{ms:.3f},"prev":"{prev}"}}'
    ).encode("ascii")


def quote(text: str) -> str:
    """A JSON string, ASCII only."""
    return _quote(text)


def who_json(user: str | None, uid: int, group: str | None, gid: int) -> str:
    """The ``user``/``uid``/``group``/``gid`` members."""
    name = "null" if user is None else _quote(user)
    gname = "null" if group is None else _quote(group)
    return f'"user":{name},"uid":{uid},"group":{gname},"gid":{gid}'


def peer_json(peer: str) -> str:
    """The ``addr``/``port`` members of ``host:port``."""
    host, _, port = peer.rpartition(":")
    if not host:
        host, port = peer, ""
    return f'"addr":{_quote(host)},"port":{_quote(port)}'


def session_user(session: Any) -> str | None:
    """The user name a session string names (before the first ``:``)."""
    if not isinstance(session, str):
        return None
    return session.split(":", 1)[0][:256]


#: ``ok``, ``code``, the new object's ``id`` (or None), ``error`` (or None).
Outcome = tuple[bool, int, int | None, str | None]

#: A record's fields as the trail keeps them until its batch is written (and the
#: journal stores them): seq, time (seconds since the epoch), req, user, uid, group,
#: gid, peer (``host:port``), method, parameters (``Masker.stored``), outcome, ms.
Raw = tuple[int, float, int, str | None, int, str | None, int, str, str, tuple[Any, ...],
            Outcome, float]  # fmt: skip
#: A call that succeeded naming no new object.
OK: Outcome = (True, 0, None, None)
NO_ANSWER: Outcome = (False, -1, None, "no answer")


def outcome(method: str, result: Any) -> Outcome:
    """What an answer array ``[ok, value, code, ...]`` says."""
    if method.startswith("system."):
        return OK  # an XML-RPC built-in answered (faults raise)
    if not isinstance(result, list) or not result:
        return NO_ANSWER
    if result[0] is True:
        value = result[1] if len(result) > 1 else None
        if (type(value) is not int and not isinstance(value, int)) or isinstance(value, bool):
            return OK
        tail = method.rpartition(".")[2]
        return (True, 0, int(value), None) if tail in CREATORS else OK
    code = result[2] if len(result) > 2 and isinstance(result[2], int) else -1
    message = result[1] if len(result) > 1 and isinstance(result[1], str) else ""
    return (False, int(code), None, message)
