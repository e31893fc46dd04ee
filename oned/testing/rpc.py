"""An in-memory daemon for API tests: real schema, real dispatch, no threads or sockets.

``OnedHarness`` builds the ``Core`` on ``Database.memory()`` with a ``Clock``, runs the
real bootstrap, and ``call()`` pushes a serialised XML-RPC request through the real
``RequestManager`` and decodes the response, so (de)serialisation is exercised too.
Everything resolves synchronously: results are pulled without a reactor.
"""

from __future__ import annotations

import tempfile
import xmlrpc.client
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from oned.api import build_registry
from oned.api.dispatch import RequestManager
from oned.bootstrap import Credentials, bootstrap
from oned.config import OnedConfig, parse_config_text
from oned.core import Core
from oned.db.database import Database
from oned.locations import Locations, packaged_share


def result_of(d: Deferred[Any]) -> Any:
    """The result of an already-fired Deferred (raises if it has not fired)."""
    box: list[Any] = []
    d.addBoth(box.append)
    if not box:
        raise AssertionError("Deferred has not fired: this is probably a test design issue")
    value = box[0]
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


def test_locations(root: Path) -> Locations:
    return Locations.from_env({"ONE_LOCATION": str(root)})


def test_config(root: Path, extra: str = "") -> OnedConfig:
    text = (packaged_share() / "etc" / "oned.conf").read_text(encoding="utf-8")
    return parse_config_text(text + "\n" + extra, test_locations(root))


class OnedHarness:
    """A bootstrapped core behind the real request manager."""

    def __init__(self, extra_config: str = "", password: str = "adminpw") -> None:  # noqa: S107
        self._tmp = tempfile.TemporaryDirectory(prefix="oned-test-")
        root = Path(self._tmp.name)
        auth = root / "one_auth"
        auth.write_text(f"oneadmin:{password}\n", encoding="utf-8")
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.config = test_config(root, extra_config)
        self.db = Database.memory()
        self.core = Core.create(self.config, self.clock, self.db)
        result_of(Deferred.fromCoroutine(self.core.load()))
        self.credentials: Credentials | None = result_of(
            Deferred.fromCoroutine(bootstrap(self.core, {"ONE_AUTH": str(auth)}))
        )
        self.manager = RequestManager(self.core, build_registry())
        self.admin = f"oneadmin:{password}"

    def close(self) -> None:
        self._tmp.cleanup()

    def raw(self, method: str, *params: Any) -> Any:
        """Call ``method``; returns the decoded value (array) or raises ``Fault``."""
        body = xmlrpc.client.dumps(params, method).encode()
        reply = result_of(Deferred.fromCoroutine(self.manager.handle_body(body, "127.0.0.1:1")))
        return xmlrpc.client.loads(reply)[0][0]

    def call(self, method: str, *params: Any, session: str | None = None) -> Any:
        """Call with a session (oneadmin's by default)."""
        return self.raw(method, session or self.admin, *params)

    def ok(self, method: str, *params: Any, session: str | None = None) -> Any:
        """Call and require success; returns the value."""
        reply = self.call(method, *params, session=session)
        if not reply[0]:
            raise AssertionError(f"{method} failed: {reply}")
        return reply[1]
