"""External authentication through AUTH_MAD with our driver programs."""

from __future__ import annotations

from pathlib import Path

import pyone
import pytest

from .conftest import Daemon

pytestmark = pytest.mark.slow


@pytest.fixture
def ext(tmp_path: Path) -> Daemon:
    d = Daemon(tmp_path / "ext", extra_conf='DEFAULT_AUTH = "dummy"\n')
    d.start()
    yield d  # type: ignore[misc]
    d.stop()


def test_driver_authenticates_existing_user(ext: Daemon) -> None:
    """A user whose AUTH_DRIVER is 'plain' is checked by remotes/auth/plain."""
    one = pyone.OneServer(ext.url, session=ext.session)
    uid = one.user.allocate("ext", "letmein", "plain")
    assert one.user.info(uid).AUTH_DRIVER == "plain"
    me = pyone.OneServer(ext.url, session="ext:letmein").user.info(-1)
    assert me.ID == uid
    with pytest.raises(pyone.OneAuthenticationException):
        pyone.OneServer(ext.url, session="ext:wrong").user.info(-1)
    assert "Auth Error" in ext.log()


def test_unknown_user_created_by_default_driver(ext: Daemon) -> None:
    """An unknown name is passed to DEFAULT_AUTH and created on the fly in 'users'."""
    me = pyone.OneServer(ext.url, session="newcomer:whatever").user.info(-1)
    assert me.NAME == "newcomer"
    assert me.AUTH_DRIVER == "dummy"
    assert me.GNAME == "users"
    again = pyone.OneServer(ext.url, session="newcomer:whatever").user.info(-1)
    assert again.ID == me.ID
