"""oned-hem's settings: onehem-server.conf, flags, where oned and the credential are."""

from __future__ import annotations

from pathlib import Path

from oned.hem.cli import parser, read_conf, settings_from
from oned.hem.client import auth_files, default_endpoint, read_session
from oned.locations import Locations


def test_conf_then_flags(tmp_path: Path) -> None:
    conf = tmp_path / "onehem-server.conf"
    conf.write_text(
        "---\n# onehem-server.conf\n:debug_level: 3\n:concurrency: 4\n"
        ":subscriber_endpoint  : tcp://localhost:3101\n"
        ":hook_base_path: /srv/hooks\n:reload_interval: 5\n"
    )
    values = read_conf(conf)
    assert values["concurrency"] == "4" and values["debug_level"] == "3"
    loc = Locations.from_env({"ONE_LOCATION": str(tmp_path)})
    s = settings_from(parser().parse_args([]), values, loc)
    assert (s.concurrency, s.hook_slots) == (4, 2)
    assert s.subscriber_endpoint == "tcp://127.0.0.1:3101"
    assert s.replier_endpoint == "tcp://127.0.0.1:2102"
    assert (s.hook_base_path, s.reload_interval) == ("/srv/hooks", 5.0)
    s = settings_from(
        parser().parse_args(["--concurrency", "1", "--replier", "tcp://h:1"]), values, loc
    )
    assert (s.concurrency, s.hook_slots, s.replier_endpoint) == (1, 1, "tcp://h:1")
    default = settings_from(parser().parse_args([]), {}, loc)
    assert default.hook_base_path == str(tmp_path / "var" / "remotes" / "hooks")
    assert read_conf(tmp_path / "missing") == {}


def test_endpoint_and_credential_lookup(tmp_path: Path) -> None:
    assert default_endpoint({}) == "http://localhost:2633/RPC2"
    assert default_endpoint({"ONE_XMLRPC": "http://x:1/RPC2"}) == "http://x:1/RPC2"
    env = {"ONE_LOCATION": str(tmp_path / "one"), "HOME": str(tmp_path / "home")}
    assert read_session(env) is None
    generated = tmp_path / "one" / "var" / ".one" / "one_auth"
    generated.parent.mkdir(parents=True)
    generated.write_text("oneadmin:generated\n")
    assert read_session(env) == "oneadmin:generated"
    home = tmp_path / "home" / ".one" / "one_auth"
    home.parent.mkdir(parents=True)
    home.write_text("oneadmin:home\n")
    assert read_session(env) == "oneadmin:home"
    explicit = tmp_path / "auth"
    explicit.write_text("me:pw\n")
    assert read_session({**env, "ONE_AUTH": str(explicit)}) == "me:pw"
    assert auth_files({**env, "ONE_AUTH": str(explicit)})[0] == explicit


def test_serveradmin_credential_reads_the_hook_pool(tmp_path: Path) -> None:
    from oned.testing.rpc import OnedHarness

    h = OnedHarness()
    try:
        root = Path(h._tmp.name)
        env = {"ONE_LOCATION": str(root), "HOME": str(tmp_path)}
        assert (root / "var" / ".one" / "oneflow_auth").exists()
        session = read_session(env, now=h.clock.seconds())
        assert session is not None and session.startswith("serveradmin:serveradmin:")
        h.ok("one.hook.allocate", 'NAME=a\nTYPE=api\nCALL="one.vm.allocate"\nCOMMAND=x')
        pool = h.ok("one.hookpool.info", -2, -1, -1, session=session)
        assert "<NAME>a</NAME>" in pool
    finally:
        h.close()
