"""Hooks as the HEM reads them: keys, bus filters, arguments, events."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from lxml import etree

from oned.hem.hooks import (
    STATIC_FILTERS,
    Hook,
    HookMap,
    lenient_b64decode,
    parse_event,
    parse_pool,
    parse_xml,
    serialize,
)

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"

POOL = (
    "<HOOK_POOL><HOOK><ID>1</ID><NAME>sample-vm-running-hook</NAME><TYPE>state</TYPE><TEMPLATE>"
    "<ARGUMENTS><![CDATA[$TEMPLATE]]></ARGUMENTS><COMMAND><![CDATA[/usr/bin/true]]></COMMAND>"
    "<LCM_STATE><![CDATA[RUNNING]]></LCM_STATE><REMOTE><![CDATA[NO]]></REMOTE>"
    "<RESOURCE><![CDATA[VM]]></RESOURCE><STATE><![CDATA[ACTIVE]]></STATE>"
    "<TIMEOUT><![CDATA[30]]></TIMEOUT></TEMPLATE></HOOK><HOOK><ID>0</ID>"
    "<NAME>sample-api-hook</NAME><TYPE>api</TYPE><TEMPLATE><ARGUMENTS><![CDATA[$API]]></ARGUMENTS>"
    "<CALL><![CDATA[one.vm.allocate]]></CALL><COMMAND><![CDATA[/usr/bin/true]]></COMMAND>"
    "<REMOTE><![CDATA[NO]]></REMOTE></TEMPLATE></HOOK></HOOK_POOL>"
)

API_EVENT = (
    "<HOOK_MESSAGE><HOOK_TYPE>API</HOOK_TYPE><CALL>one.vm.allocate</CALL><CALL_INFO>"
    "<RESULT>1</RESULT><PARAMETERS><PARAMETER><POSITION>1</POSITION><TYPE>IN</TYPE>"
    "<VALUE>****</VALUE></PARAMETER><PARAMETER><POSITION>2</POSITION><TYPE>IN</TYPE>"
    "<VALUE>NAME=a CPU=<1></VALUE></PARAMETER></PARAMETERS><EXTRA/></CALL_INFO></HOOK_MESSAGE>"
)

STATE_EVENT = (
    "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>VM</HOOK_OBJECT>"
    "<STATE>ACTIVE</STATE><LCM_STATE>RUNNING</LCM_STATE><RESOURCE_ID>7</RESOURCE_ID>"
    "<REMOTE_HOST>node1</REMOTE_HOST><VM><ID>7</ID><NAME>x</NAME>"
    "<TEMPLATE><A><![CDATA[b]]></A></TEMPLATE></VM></HOOK_MESSAGE>"
)


def _hooks() -> dict[str, Hook]:
    return {h.name: h for h in parse_pool(POOL)}


def test_pool_sample_parses_when_present() -> None:
    sample = SAMPLES / "one.hookpool.info.xml"
    if not sample.exists():
        pytest.skip("no shared samples")
    hooks = parse_pool(sample.read_text())
    assert sorted(h.id for h in hooks) == [0, 1]


def test_keys_and_filters() -> None:
    hooks = _hooks()
    state, api = hooks["sample-vm-running-hook"], hooks["sample-api-hook"]
    assert (state.type, state.key, state.filter) == (
        "state", "VM/ACTIVE/RUNNING", "EVENT STATE VM/ACTIVE/RUNNING",
    )
    assert (api.key, api.filter) == ("one.vm.allocate", "EVENT API one.vm.allocate ")
    assert state.timeout == 30 and api.timeout is None
    assert not state.remote and not state.as_stdin
    host = Hook(3, "h", "state", {"RESOURCE": "HOST", "STATE": "ERROR"})
    assert host.key == "HOST/ERROR/"
    assert Hook(4, "x", "bogus").valid is False


def test_flags() -> None:
    hook = Hook(1, "h", "api", {"REMOTE": "yes", "ARGUMENTS_STDIN": "YES", "TIMEOUT": "5s"})
    assert hook.remote and hook.as_stdin and hook.timeout == 5
    # onehem-server only takes "yes": "true" leaves the arguments on the command line
    assert not Hook(1, "h", "api", {"ARGUMENTS_STDIN": "true"}).as_stdin


def test_api_arguments_are_the_b64_call_info() -> None:
    doc = parse_xml(API_EVENT)  # unescaped '<' in a parameter, read leniently
    assert doc is not None
    hook = Hook(0, "a", "api", {"ARGUMENTS": "  $API  literal $TEMPLATE x", "CALL": "c"})
    args = hook.arguments(doc)
    words = args.split(" ")
    call_info = base64.b64decode(words[0]).decode()
    assert call_info.startswith("<CALL_INFO>") and "<RESULT>1</RESULT>" in call_info
    assert etree.fromstring(call_info.encode()).findtext("RESULT") == "1"
    # $TEMPLATE is empty for an API event: two blanks, as onehem-server builds it
    assert args.endswith("literal  x")
    assert hook.remote_host(doc) == ""


def test_state_arguments_are_the_b64_object() -> None:
    doc = parse_xml(STATE_EVENT)
    assert doc is not None
    hook = _hooks()["sample-vm-running-hook"]
    vm = base64.b64decode(hook.arguments(doc)).decode()
    assert vm.startswith("<VM>") and "<![CDATA[b]]>" in vm
    assert etree.fromstring(vm.encode()).findtext("ID") == "7"
    assert hook.remote_host(doc) == "node1"
    net = parse_xml(
        "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>NET</HOOK_OBJECT>"
        "<STATE>READY</STATE><RESOURCE_ID>2</RESOURCE_ID><VNET><ID>2</ID></VNET></HOOK_MESSAGE>"
    )
    assert net is not None
    assert base64.b64decode(hook.arguments(net)).decode().startswith("<VNET>")


def test_arguments_without_template_or_type() -> None:
    doc = parse_xml(STATE_EVENT)
    assert doc is not None
    assert Hook(1, "h", "state", {}).arguments(doc) == ""
    broken = parse_xml("<HOOK_MESSAGE><X/></HOOK_MESSAGE>")
    assert broken is not None
    assert Hook(1, "h", "state", {"ARGUMENTS": "$TEMPLATE a"}).arguments(broken) == ""
    assert serialize(None) == ""


def test_parse_event_keys() -> None:
    api = parse_event(b"EVENT API one.vm.allocate 1", b"Zm9v")
    assert api is not None and (api.action, api.type, api.key, api.result) == (
        "EVENT", "API", "one.vm.allocate", "1",
    )
    vm = parse_event(b"EVENT STATE VM/ACTIVE/RUNNING/7 ", b"")
    assert vm is not None and vm.key == "VM/ACTIVE/RUNNING"
    host = parse_event(b"EVENT STATE HOST/MONITORED//3 ", b"")
    assert host is not None and host.key == "HOST/MONITORED/"
    retry = parse_event(b"RETRY", b"abc ")
    assert retry is not None and retry.action == "RETRY"
    assert parse_event(b"", b"") is None
    assert parse_event(b"EVENT", b"") is None
    assert parse_event(b"NOISE x y", b"") is None


def test_hookmap_counts_shared_filters() -> None:
    hooks = HookMap()
    a = Hook(1, "a", "api", {"CALL": "one.vm.allocate"})
    b = Hook(2, "b", "api", {"CALL": "one.vm.allocate"})
    hooks.add(a)
    hooks.add(b)
    assert [h.id for h in hooks.hooks_for("API", "one.vm.allocate")] == [1, 2]
    assert hooks.subscriptions() == {"EVENT API one.vm.allocate ", *STATIC_FILTERS}
    hooks.delete(1)
    assert "EVENT API one.vm.allocate " in hooks.subscriptions()
    hooks.delete(2)
    assert hooks.subscriptions() == set(STATIC_FILTERS)
    hooks.replace_all([a, Hook(9, "bad", "nope")])
    assert len(hooks) == 1 and 9 not in hooks


def test_lenient_b64() -> None:
    assert lenient_b64decode("Zm9v\nYmFy\n") == b"foobar"
    assert lenient_b64decode("Zm9vY") == b"foo"
    assert lenient_b64decode("!!") == b""
