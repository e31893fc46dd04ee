"""Per-call context handed to every handler (mirrors ``RequestAttributes``)."""

from __future__ import annotations

from dataclasses import dataclass

from oned.auth.authorize import Caller


@dataclass(frozen=True)
class Call:
    """Who called which method, from where."""

    method: str
    caller: Caller
    req_id: int
    peer: str = ""

    @property
    def uid(self) -> int:
        return self.caller.uid

    @property
    def is_admin(self) -> bool:
        return self.caller.is_admin
