"""Typed errors that carry OpenNebula's wire error code (mirrors ``include/Request.h``).

API code raises ``OneError`` subclasses; ``oned.api.server`` turns them into the
``[false, message, code, resp_id, -1]`` array in exactly one place.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """``Request::ErrorCode`` bit values."""

    SUCCESS = 0x0000
    AUTHENTICATION = 0x0100
    AUTHORIZATION = 0x0200
    NO_EXISTS = 0x0400
    ACTION = 0x0800
    XML_RPC_API = 0x1000
    INTERNAL = 0x2000
    ALLOCATE = 0x4000
    LOCKED = 0x8000
    REPLICATION = 0x10000


class OneError(Exception):
    """An API failure: ``message`` is the detail after the ``[method]`` prefix."""

    code = ErrorCode.INTERNAL

    def __init__(
        self, message: str = "", resp_id: int = -1, word: str | None = None, keep_id: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.resp_id = resp_id
        self.word = word
        #: oned answers ``resp_id`` only for missing objects, and where a method sets
        #: it itself (``keep_id``, e.g. the DB error code of system.sqlquery).
        self.keep_id = keep_id


class AuthenticationError(OneError):
    code = ErrorCode.AUTHENTICATION


class AuthorizationError(OneError):
    code = ErrorCode.AUTHORIZATION


class NoExistsError(OneError):
    code = ErrorCode.NO_EXISTS


class ActionError(OneError):
    code = ErrorCode.ACTION


class ApiError(OneError):
    code = ErrorCode.XML_RPC_API


class InternalError(OneError):
    code = ErrorCode.INTERNAL


class AllocateError(OneError):
    code = ErrorCode.ALLOCATE


class ReplicationError(OneError):
    code = ErrorCode.REPLICATION


class RpcFault(Exception):
    """An XML-RPC level fault (bad parameter types/counts), not an OpenNebula array."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.fault_code = code
        self.message = message


def no_exists(word: str, oid: int) -> NoExistsError:
    """``[m] Error getting <word> [oid].`` (``Pool.`` when oid is -1)."""
    return NoExistsError("", oid, word)


def failure_message(method: str, error: OneError, word: str, uid: int) -> str:
    """``Request::failure_message``: the text of a failure array."""
    word = error.word or word
    msg = error.message
    code = error.code
    if code == ErrorCode.AUTHENTICATION:
        return f"[{method}] User couldn't be authenticated, aborting call."
    if code == ErrorCode.AUTHORIZATION:
        if not msg:
            return f"[{method}] User [{uid}] not authorized to perform action on {word}."
        return f"[{method}] User [{uid}] : {msg}."
    if code == ErrorCode.NO_EXISTS:
        if error.resp_id == -1:
            return f"[{method}] Error getting {word} Pool."
        return f"[{method}] Error getting {word} [{error.resp_id}]."
    if code == ErrorCode.ALLOCATE:
        tail = f" {msg}" if msg else ""
        return f"[{method}] Error allocating a new {word}.{tail}"
    return f"[{method}] {msg}"


def not_enough_parameters() -> RpcFault:
    return RpcFault(-501, "Not enough parameters")
