"""Masking and record fields (no daemon)."""

from __future__ import annotations

import json
import xmlrpc.client
from pathlib import Path

from oned.audit import record as rec
from oned.audit.settings import AuditSettings
from oned.config import ConfigError, parse_config_text
from oned.testing.rpc import test_locations as locations_at

HIDDEN = {"one.user.allocate": {2}, "one.user.passwd": {2}, "one.user.chauth": {3}}


def masker() -> rec.Masker:
    return rec.Masker(HIDDEN, ["CONTEXT/PASSWORD", "ONEAPP_ONEKS_CLUSTER_SPEC", "VCENTER_PASS"])


def test_session_dropped_and_hidden_positions_masked() -> None:
    m = masker()
    assert m.params("one.user.allocate", ("oneadmin:pw", "bob", "pw", "core", [1])) == [
        "bob",
        "****",
        "core",
        [1],
    ]
    assert m.params("one.user.chauth", ("s", 3, "core", "pw")) == [3, "core", "****"]
    assert m.params("one.vm.info", ("s", 4, True)) == [4, True]


def test_template_secrets_masked_in_both_syntaxes() -> None:
    m = masker()
    text = (
        'NAME = "t"\nCONTEXT = [ PASSWORD = "hunter2", NETWORK = "YES" ]\n'
        'VCENTER_PASS=bare\nROOT_PASSWORD = \'x\'\nONEAPP_ONEKS_CLUSTER_SPEC="a\\"b"\n'
    )
    masked = m.text(text)
    assert "hunter2" not in masked and "bare" not in masked and 'a\\"b' not in masked
    assert 'PASSWORD = "****"' in masked
    assert 'NETWORK = "YES"' in masked and 'NAME = "t"' in masked
    ds = m.text('SECRET_ACCESS_KEY = "abc"\nCEPH_SECRET=uuid\nSSH_PUBLIC_KEY = "ssh-rsa A"')
    assert ds == 'SECRET_ACCESS_KEY = "****"\nCEPH_SECRET="****"\nSSH_PUBLIC_KEY = "ssh-rsa A"'
    xml = "<TEMPLATE><CONTEXT><PASSWORD><![CDATA[s3cr3t]]></PASSWORD></CONTEXT><A>1</A></TEMPLATE>"
    assert (
        m.text(xml) == "<TEMPLATE><CONTEXT><PASSWORD>****</PASSWORD></CONTEXT><A>1</A></TEMPLATE>"
    )


def test_structures_converted_and_masked() -> None:
    m = masker()
    value = m.value([{"k": "PASSWORD=1", "n": 2.5}, xmlrpc.client.Binary(b"abc"), float("nan")])
    assert value == [{"k": 'PASSWORD="****"', "n": 2.5}, "<base64 3 bytes>", "nan"]


def test_long_strings_truncated() -> None:
    text = masker().text("x" * (rec.MAX_STRING + 10))
    assert text.endswith("...[10 more characters]")
    assert len(text) < rec.MAX_STRING + 40


def test_read_only_methods() -> None:
    for name in ("one.vm.info", "one.vmpool.infoextended", "one.system.version",
                 "one.hooklog.info", "system.listMethods", "one.vmpool.showback"):  # fmt: skip
        assert rec.is_read_only(name), name
    for name in ("one.vm.allocate", "one.user.login", "one.vmpool.calculateshowback",
                 "one.zone.enable", "one.vm.action"):  # fmt: skip
        assert not rec.is_read_only(name), name


def test_outcome_ids_only_for_new_objects() -> None:
    assert rec.outcome("one.vm.allocate", [True, 7, 0]) == (True, 0, 7, None)
    assert rec.outcome("one.template.instantiate", [True, 9, 0])[2] == 9
    assert rec.outcome("one.vm.action", [True, 7, 0]) == (True, 0, None, None)
    assert rec.outcome("one.user.login", [True, "token", 0]) == (True, 0, None, None)
    failed = rec.outcome("one.vm.info", [False, "[one.vm.info] nope", 1024, 3, -1])
    assert failed == (False, 1024, None, "[one.vm.info] nope")


def test_line_is_the_documented_json() -> None:
    ending = (False, 256, None, 'bad "quote" \u00e9')
    who = rec.who_json(None, -1, None, -1)
    args = masker().params_json("one.x", ("s", "\u00e9", 1))
    got = rec.line(3, "T", 9, who, rec.peer_json("::1:80"), rec.quote("one.x"), args, ending,
                   1.5, "ab")  # fmt: skip
    record = json.loads(got)
    keys = ["seq", "time", "req", "user", "uid", "group", "gid", "addr", "port", "method"]
    assert list(record) == [*keys, "params", "ok", "code", "error", "ms", "prev"]
    assert record["error"] == 'bad "quote" \u00e9' and record["params"] == ["\u00e9", 1]
    assert (record["addr"], record["port"], record["ms"]) == ("::1", "80", 1.5)
    assert (record["user"], record["group"], record["uid"]) == (None, None, -1)
    assert got.isascii()
    assert rec.timestamp(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"


def test_settings_defaults_and_errors(tmp_path: Path) -> None:
    assert AuditSettings.from_vector(None) == AuditSettings()
    s = AuditSettings.from_vector(
        {"MODE": "ALL", "PATH": "/x/a.log", "MAX_SIZE": "5", "KEEP": "3", "FSYNC": "-1",
         "WRITE_DELAY": "0.3"}
    )  # fmt: skip
    assert (s.mode, s.path, s.max_size_mb, s.keep, s.fsync) == ("all", "/x/a.log", 5, 3, -1.0)
    assert s.write_delay == 0.3
    loc = locations_at(tmp_path)
    for bad in ('MODE = "sometimes"', 'DESTINATION = "tape"', 'MAX_SIZE = "big"', 'KEEP = "-2"',
                'WRITE_DELAY = "0"', 'WRITE_DELAY = "60"'):  # fmt: skip
        try:
            parse_config_text(f"AUDIT = [ {bad} ]", loc)
        except ConfigError as exc:
            assert "AUDIT" in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")
    conf = parse_config_text('AUDIT = [ MODE = "off" ]', loc)
    assert conf.audit.mode == "off"


def test_huge_parameter_arrays_are_summarised() -> None:
    params = rec.Masker({}, []).params("one.vm.update", ("s", ["y" * 1000] * 2000))
    assert len(params) == 1 and "characters of parameters, sha256" in params[0]
