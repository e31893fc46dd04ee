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


GROUPS_DRIVER = """#!/usr/bin/env python3
import os, sys, xml.etree.ElementTree as ET
doc = ET.fromstring(sys.stdin.read())
user, secret = doc.findtext("USERNAME"), doc.findtext("SECRET")
groups = open(os.path.join(os.environ["ONE_LOCATION"], "groups.txt")).read().strip()
print(f"grp {user} {secret} {groups}")
"""


@pytest.fixture
def managed(tmp_path: Path) -> Daemon:
    import shutil

    root = tmp_path / "managed"
    remotes = root / "var" / "remotes" / "auth"
    shutil.copytree(Path(__file__).resolve().parents[2] / "drivers" / "remotes" / "auth", remotes)
    script = remotes / "grp" / "authenticate"
    script.parent.mkdir()
    script.write_text(GROUPS_DRIVER)
    script.chmod(0o755)
    d = Daemon(
        root,
        extra_conf='DEFAULT_AUTH = "grp"\nSESSION_EXPIRATION_TIME = 0\n'
        'AUTH_MAD_CONF = [ NAME = "grp", PASSWORD_CHANGE = "NO", DRIVER_MANAGED_GROUPS = "YES",'
        ' DRIVER_MANAGED_GROUP_ADMIN = "YES", MAX_TOKEN_TIME = "-1" ]\n',
        replace_conf={'AUTHN = "dummy,plain,': 'AUTHN = "grp,dummy,plain,'},
    )
    d.start()
    yield d  # type: ignore[misc]
    d.stop()


def test_driver_managed_groups(managed: Daemon) -> None:
    """Groups (and group admin marks) come from the driver's reply at every login."""
    one = pyone.OneServer(managed.url, session=managed.session)
    first, second = one.group.allocate("first"), one.group.allocate("second")
    (managed.root / "groups.txt").write_text(f"{first} *{second}")
    me = pyone.OneServer(managed.url, session="mgd:token1").user.info(-1)
    assert (me.AUTH_DRIVER, me.GID, sorted(me.GROUPS.ID)) == ("grp", first, [first, second])
    assert me.ID in one.group.info(second).ADMINS.ID
    with pytest.raises(pyone.OneApiException):
        one.user.chgrp(me.ID, 1)
    (managed.root / "groups.txt").write_text(f"{second}")
    again = pyone.OneServer(managed.url, session="mgd:token2").user.info(-1)
    assert (again.GID, list(again.GROUPS.ID)) == (second, [second])
    assert me.ID not in (one.group.info(first).USERS.ID or [])


def test_managed_admin_gets_admin_rules(managed: Daemon) -> None:
    """A driver-marked group admin gets the same ACL rules as one.group.addadmin."""
    one = pyone.OneServer(managed.url, session=managed.session)
    gid = one.group.allocate("team")
    (managed.root / "groups.txt").write_text(f"*{gid}")
    me = pyone.OneServer(managed.url, session="boss:t").user.info(-1)
    rules = [r.STRING for r in one.acl.info().ACL]
    assert f"#{me.ID} GROUP/#{gid} MANAGE *" in rules
