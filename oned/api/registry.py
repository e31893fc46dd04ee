"""RPC method registry (mirrors ``RequestXRPC`` construction and ``Request::execute``).

Each ``one.*`` method is declared once with ``@rpc(name, params, required=...)``; the
parameter kinds after the session are ``i`` (int), ``I`` (i8), ``s`` (string), ``b``
(boolean), ``A`` (array) and ``*`` (any: the handler checks it). Checking them here
gives xmlrpc-c's -501 faults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oned.api.codec import I8, INT32_MAX, INT32_MIN
from oned.errors import RpcFault, not_enough_parameters

if TYPE_CHECKING:
    from oned.api.context import Call
    from oned.core import Core

Handler = Callable[..., Awaitable[Any]]

_TYPE_FAULT = {
    "i": "Parameter that is supposed to be integer is not",
    "I": "Parameter that is supposed to be 64-bit integer is not",
    "s": "Parameter that is supposed to be a string is not",
    "b": "Parameter that is supposed to be boolean is not",
    "A": "Parameter that is supposed to be an array is not",
}

_SIG = {"i": "i", "I": "I", "s": "s", "b": "b", "A": "A", "*": "A"}


@dataclass(frozen=True)
class Method:
    """One registered ``one.*`` method."""

    name: str
    kinds: str
    required: int
    handler: Handler
    help: str
    authenticate: bool = True
    returns: str = "A"

    @property
    def signature(self) -> str:
        return f"{self.returns}:s" + "".join(_SIG[k] for k in self.kinds)

    def coerce(self, params: tuple[Any, ...]) -> list[Any]:
        """Type-check the parameters after the session; extra ones are ignored."""
        if len(params) < self.required:
            raise not_enough_parameters()
        out: list[Any] = []
        for kind, value in zip(self.kinds, params, strict=False):
            out.append(_check(kind, value))
        return out


def _check(kind: str, value: Any) -> Any:
    ok: bool
    if kind == "*":
        return value
    if kind == "i":
        ok = type(value) is int and INT32_MIN <= value <= INT32_MAX
    elif kind == "I":
        ok = type(value) in (int, I8) and not isinstance(value, bool)
    elif kind == "s":
        ok = isinstance(value, str)
    elif kind == "b":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, list)
    if not ok:
        raise RpcFault(-501, _TYPE_FAULT[kind])
    return int(value) if kind == "I" else value


class Registry:
    """All methods, by name."""

    def __init__(self) -> None:
        self.methods: dict[str, Method] = {}

    def add(self, method: Method) -> None:
        if method.name in self.methods:
            raise ValueError(f"duplicate method {method.name}")
        self.methods[method.name] = method

    def get(self, name: str) -> Method | None:
        return self.methods.get(name)


_DECLARED: list[Method] = []


def rpc(
    name: str,
    kinds: str = "",
    required: int | None = None,
    help: str = "",
    authenticate: bool = True,
) -> Callable[[Handler], Handler]:
    """Declare a handler ``async def h(core, call, *params)`` for method ``name``."""

    def wrap(fn: Handler) -> Handler:
        _DECLARED.append(
            Method(
                name,
                kinds,
                len(kinds) if required is None else required,
                fn,
                help or (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else help,
                authenticate,
            )
        )
        return fn

    return wrap


def declared() -> list[Method]:
    return list(_DECLARED)


def call_handler(method: Method, core: Core, call: Call, args: list[Any]) -> Awaitable[Any]:
    return method.handler(core, call, *args)
