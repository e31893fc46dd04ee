"""The XML-RPC side of the HEM: where oned is and who we are, as OpenNebula's tools find
it (``ONE_XMLRPC``; ``ONE_AUTH``, ``~/.one/one_auth``, the oneadmin credential oned writes
under ``var/.one``, then serveradmin's ``*_auth`` files there), and the calls it makes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from oned.auth import server_cipher
from oned.hem.hooks import Hook, parse_pool, parse_xml
from oned.locations import Locations

DEFAULT_ENDPOINT = "http://localhost:2633/RPC2"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class OnedError(Exception):
    """oned answered a call with an error, or could not be reached."""


def default_endpoint(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("ONE_XMLRPC") or DEFAULT_ENDPOINT


def auth_files(environ: dict[str, str] | None = None) -> list[Path]:
    """Candidate credential files, in the order they are tried."""
    env = dict(os.environ if environ is None else environ)
    files: list[Path] = []
    if env.get("ONE_AUTH"):
        files.append(Path(env["ONE_AUTH"]))
    if env.get("HOME"):
        files.append(Path(env["HOME"]) / ".one" / "one_auth")
    files.append(Locations.from_env(env).var / ".one" / "one_auth")
    return files


#: serveradmin's credential files oned writes in ``var/.one`` (used after oneadmin's).
SERVER_AUTH_FILES = ("oneflow_auth", "sunstone_auth", "onegate_auth")
#: Lifetime of a serveradmin login token.
SERVER_TOKEN_TIME = 3600


def _first_line(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    line = text.splitlines()[0].strip() if text else ""
    return line if ":" in line else None


def read_session(environ: dict[str, str] | None = None, now: float | None = None) -> str | None:
    """The session: ``user:password`` from the first readable credential file, else a
    ``server_cipher`` login of serveradmin (as OpenNebula's servers make it from their
    ``*_auth`` file); None if none exists yet (oned writes them at its first start, the
    HEM waits for them)."""
    for path in auth_files(environ):
        line = _first_line(path)
        if line is not None:
            return line
    var = Locations.from_env(dict(os.environ if environ is None else environ)).var
    for name in SERVER_AUTH_FILES:
        line = _first_line(var / ".one" / name)
        if line is not None:
            user, _, password = line.partition(":")
            expire = int((time.time() if now is None else now) + SERVER_TOKEN_TIME)
            secret = server_cipher.sign(user, user, expire, sha256_hex(password))
            return f"{user}:{secret}"
    return None


@dataclass
class OnedClient:
    """Blocking XML-RPC calls run in a worker thread, one short-lived connection each."""

    endpoint: str
    session: str | None = None
    timeout: float = 30.0
    environ: dict[str, str] | None = None

    def _session(self) -> str:
        session = self.session or read_session(self.environ)
        if session is None:
            raise OnedError("no credential: set ONE_AUTH or pass --session")
        return session

    def _call(self, method: str, *args: object) -> str:
        transport: xmlrpc.client.Transport
        if self.endpoint.startswith("https:"):
            transport = xmlrpc.client.SafeTransport()
        else:
            transport = _TimeoutTransport(self.timeout)
        proxy = xmlrpc.client.ServerProxy(self.endpoint, transport=transport)
        try:
            answer = getattr(proxy, method)(self._session(), *args)
        except (OSError, xmlrpc.client.Error) as exc:
            raise OnedError(f"{method}: {exc}") from exc
        if not isinstance(answer, list) or not answer:
            raise OnedError(f"{method}: unexpected answer")
        if not answer[0]:
            raise OnedError(str(answer[1]) if len(answer) > 1 else method)
        return str(answer[1])

    async def hookpool_info(self) -> list[Hook]:
        xml = await asyncio.to_thread(self._call, "one.hookpool.info", -2, -1, -1)
        if parse_xml(xml) is None:
            raise OnedError("one.hookpool.info: unreadable HOOK_POOL")
        return parse_pool(xml)

    async def call(self, method: str, *args: object) -> str:
        return await asyncio.to_thread(self._call, method, *args)


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: object) -> object:  # type: ignore[override]
        conn = super().make_connection(host)  # type: ignore[arg-type]
        conn.timeout = self._timeout
        return conn
