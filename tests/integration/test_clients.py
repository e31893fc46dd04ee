"""Other real clients: opennebula-cli (PyPI) and OpenNebula's Ruby CLI, when available."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import Daemon

pytestmark = pytest.mark.slow

ONECLI = os.environ.get("ONECLI", "")
RUBY_CLI = os.environ.get("ONE_RUBY_CLI", "")


def onecli(d: Daemon, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               ONE_XMLRPC=d.url, ONE_AUTH=d.session)
    env.pop("ONE_GRPC", None)
    return subprocess.run([ONECLI, "--output", "json", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.skipif(not ONECLI, reason="set ONECLI to opennebula-cli's `one` program")
def test_opennebula_cli(daemon: Daemon, tmp_path: Path) -> None:
    """`one --output json user list` and friends work against our daemon."""
    done = onecli(daemon, tmp_path, "user", "list")
    assert done.returncode == 0, done.stderr
    assert {u["name"] for u in json.loads(done.stdout)} == {"oneadmin", "serveradmin"}
    done = onecli(daemon, tmp_path, "group", "create", "team")
    assert done.returncode == 0, done.stderr
    done = onecli(daemon, tmp_path, "user", "create", "bob", "bobpw", "--group", "100")
    assert done.returncode == 0, done.stderr
    users = json.loads(onecli(daemon, tmp_path, "user", "list").stdout)
    assert {"name": "bob", "group": "team"}.items() <= next(
        u for u in users if u["name"] == "bob").items()
    assert onecli(daemon, tmp_path, "group", "list").returncode == 0
    assert onecli(daemon, tmp_path, "acl", "list").returncode == 0
    shown = json.loads(onecli(daemon, tmp_path, "user", "show", "0").stdout)
    assert shown["name"] == "oneadmin"


def ruby(d: Daemon, tmp_path: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    root = Path(RUBY_CLI)
    auth = tmp_path / "ruby_auth"
    auth.write_text(d.session + "\n")
    env = dict(os.environ, ONE_LOCATION=str(root), ONE_XMLRPC=d.url, ONE_AUTH=str(auth),
               HOME=str(tmp_path), RUBYLIB=f"{root}/lib/ruby:{root}/lib/ruby/cli")
    return subprocess.run([str(root / "bin" / cmd[0]), *cmd[1:]], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.skipif(not RUBY_CLI, reason="set ONE_RUBY_CLI to an installed Ruby CLI tree")
def test_ruby_cli(daemon: Daemon, tmp_path: Path) -> None:
    """oneuser, onegroup and oneacl list/show/create through the official Ruby CLI."""
    for cmd in (("oneuser", "list"), ("onegroup", "list"), ("oneacl", "list"),
                ("oneuser", "show"), ("onegroup", "show", "0"),
                ("onegroup", "create", "rubies"), ("oneuser", "create", "ruby", "pw"),
                ("oneacl", "create", "@1 DOCUMENT/* USE"), ("oneuser", "show", "ruby", "-x"),
                ("oneuser", "list", "-x"), ("onegroup", "list", "-j")):
        done = ruby(daemon, tmp_path, *cmd)
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
    assert "rubies" in ruby(daemon, tmp_path, "onegroup", "list").stdout
    assert "@1" in ruby(daemon, tmp_path, "oneacl", "list").stdout
