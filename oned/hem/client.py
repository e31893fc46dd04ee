"""The XML-RPC side of the HEM: where oned is and who we are, as OpenNebula's tools find
it (``ONE_XMLRPC``; ``ONE_AUTH``, ``~/.one/one_auth``, then the oneadmin credential oned
writes under ``var/.one``), and the two calls the HEM makes."""

from __future__ import annotations

import asyncio
import os
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from oned.hem.hooks import Hook, parse_pool, parse_xml
from oned.locations import Locations

DEFAULT_ENDPOINT = "http://localhost:2633/RPC2"


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


def read_session(environ: dict[str, str] | None = None) -> str | None:
    """``user:password`` from the first readable credential file (None if none yet: oned
    writes the generated one at its first start, the HEM waits for it)."""
    for path in auth_files(environ):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if ":" in text:
            return text.splitlines()[0].strip()
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
