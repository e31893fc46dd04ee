"""The hook manager through the real request manager and VM managers, with a recording
hook driver: API and state HOOK_MESSAGEs (exact bytes, schemas), one state event per
change, results into the hook log, the event queue across restarts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, b64encode
from oned.managers.hook.manager import RESEND_DELAY, HookManager
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.managers.lifecycle.wiring import use_drivers
from oned.testing.rpc import OnedHarness, result_of


def _load_xsd() -> ModuleType:
    """``tests/integration/xsd.py`` (this package cannot import ``tests``)."""
    path = Path(__file__).resolve().parents[2] / "integration" / "xsd.py"
    spec = importlib.util.spec_from_file_location("hook_manager_xsd", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


xsd = _load_xsd()
VM_TEMPLATE = 'NAME="v"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"'
RUNNING_HOOK = (
    'NAME="running"\nTYPE="state"\nRESOURCE="VM"\nON="RUNNING"\nCOMMAND="/usr/bin/true"\n'
    'ARGUMENTS="$TEMPLATE"'
)
USER_HOOK = 'NAME="users"\nTYPE="api"\nCALL="one.user.allocate"\nCOMMAND="true"\nARGUMENTS="$API"'
RESULT = (
    "<ARGUMENTS>QQ==</ARGUMENTS><EXECUTION_RESULT><COMMAND>/usr/bin/true</COMMAND>"
    "<STDOUT/><STDERR/><CODE>0</CODE></EXECUTION_RESULT>"
)


def _schema(name: str) -> Any:
    path = xsd.XSD_DIR / name
    return etree.XMLSchema(etree.parse(str(path)))


def schema_errors(document: str, name: str) -> list[str]:
    """Errors of a HOOK_MESSAGE against one of the three hook_message_*.xsd."""
    if not (xsd.XSD_DIR / name).exists():
        return []
    schema = _schema(name)
    root = xsd._into_ns(etree.fromstring(document.encode()))
    if schema.validate(root):
        return []
    return [str(e.message) for e in schema.error_log][:5]


class FakeHookDriver:
    """Stands for HM_MAD: records EXECUTE/RETRY lines, answers as the driver would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str]] = []
        self.handlers: dict[str, Any] = {}
        self.reconnect: list[Any] = []

    def register_action(self, family: Family, action: str, handler: Any) -> None:
        assert family is Family.HOOK
        self.handlers[action] = handler

    def add_reconnect_callback(self, family: Family, callback: Any) -> None:
        self.reconnect.append(callback)

    def send(self, family: Family, action: str, oid: int, payload: str = "", **_: Any) -> bool:
        assert family is Family.HOOK
        self.sent.append((action, oid, payload))
        return True

    def docs(self, action: str = "EXECUTE") -> list[str]:
        return [b64decode(p) for a, _, p in self.sent if a == action]

    def result(self, hkid: int, rc: int, body: str = RESULT) -> None:
        status = "SUCCESS" if rc == 0 else "FAILURE"
        self.handlers["EXECUTE"](DriverMessage("EXECUTE", status, hkid, f"{rc} {b64encode(body)}"))


class HookCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        self.hm = self.start_hooks(self.h.core.hook_manager)

    def start_hooks(self, manager: HookManager) -> FakeHookDriver:
        self.hook_driver = FakeHookDriver()
        manager.use_drivers(self.hook_driver)
        result_of(Deferred.fromCoroutine(manager.start()))
        return self.hook_driver

    def api_docs(self, call: str) -> list[str]:
        return [d for d in self.hm.docs() if f"<CALL>{call}</CALL>" in d]

    def queued(self) -> list[tuple[int, int]]:
        rows = self.h.core.db._conn.execute("SELECT eid, hkid FROM hook_event_queue ORDER BY eid")
        return [(int(e), int(h)) for e, h in rows]


def _in(pos: int, value: str) -> str:
    return f"<PARAMETER><POSITION>{pos}</POSITION><TYPE>IN</TYPE><VALUE>{value}</VALUE></PARAMETER>"


def _out(pos: int, value: str) -> str:
    return (
        f"<PARAMETER><POSITION>{pos}</POSITION><TYPE>OUT</TYPE><VALUE>{value}</VALUE></PARAMETER>"
    )


class ApiEventTests(HookCase):
    def test_allocate_document(self) -> None:
        """Session and password masked, OUT parameters, EXTRA with the new object."""
        uid = self.h.ok("one.user.allocate", "alice", "secret", "")
        [doc] = self.api_docs("one.user.allocate")
        expected = (
            "<HOOK_MESSAGE><HOOK_TYPE>API</HOOK_TYPE><CALL>one.user.allocate</CALL>"
            "<CALL_INFO><RESULT>1</RESULT><PARAMETERS>"
            + _in(1, "****") + _in(2, "alice") + _in(3, "****") + _in(4, "")
            + _out(1, "true") + _out(2, str(uid)) + _out(3, "0")
            + f"</PARAMETERS><EXTRA>{self.h.core.users.body(uid)}</EXTRA></CALL_INFO>"
            "</HOOK_MESSAGE>"
        )  # fmt: skip
        self.assertEqual(doc, expected)
        self.assertEqual(schema_errors(doc, "hook_message_api.xsd"), [])
        action, oid, payload = self.hm.sent[-1]
        self.assertEqual((action, oid), ("EXECUTE", -1))
        self.assertEqual(payload, b64encode(expected))

    def test_info_calls_fire_nothing(self) -> None:
        for call, args in (
            ("one.user.info", (0,)),
            ("one.userpool.info", ()),
            ("one.vmpool.info", (-2, -1, -1, -1)),
            ("one.hookpool.info", ()),
            ("one.hooklog.info", (-1, -1, -1, 0)),
        ):
            self.h.ok(call, *args)
        self.assertEqual(self.hm.sent, [])
        self.h.ok("one.system.version")
        self.assertEqual(len(self.api_docs("one.system.version")), 1)

    def test_failure_and_delete_extra(self) -> None:
        """A refused call: RESULT 0 and the error as OUT 2..4; a delete carries the
        object as it was; booleans among IN parameters are 1/0."""
        reply = self.h.call("one.document.delete", 42)
        [doc] = self.api_docs("one.document.delete")
        self.assertIn("<RESULT>0</RESULT>", doc)
        self.assertIn(
            _out(1, "false") + _out(2, str(reply[1])) + _out(3, "1024") + _out(4, "42"), doc
        )
        self.assertIn("<EXTRA></EXTRA>", doc)
        oid = self.h.ok("one.document.allocate", 'NAME="d"', 7)
        body = self.h.core.documents.body(oid)
        self.h.ok("one.document.lock", oid, 1, True)
        [lock] = self.api_docs("one.document.lock")
        self.assertIn(_in(4, "1"), lock)
        self.h.ok("one.document.unlock", oid)
        self.h.ok("one.document.delete", oid)
        [_, deleted] = self.api_docs("one.document.delete")
        self.assertIn(f"<EXTRA>{body}</EXTRA>", deleted)
        self.assertEqual(schema_errors(deleted, "hook_message_api.xsd"), [])

    def test_api_hook_event_queued_until_its_result(self) -> None:
        hkid = self.h.ok("one.hook.allocate", USER_HOOK)
        self.h.ok("one.group.allocate", "g")
        self.assertEqual(self.queued(), [])
        self.h.ok("one.user.allocate", "bob", "pw", "")
        self.assertEqual(self.queued(), [(0, hkid)])
        self.hm.result(hkid, 0)
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.h.core.hook_manager.pending, {})
        log = self.h.ok("one.hooklog.info", -1, -1, hkid, 0)
        self.assertIn("<EXECUTION_ID>0</EXECUTION_ID>", log)

    def test_retry_message(self) -> None:
        """one.hook.retry: RETRY with the record's arguments; its result is logged with
        RETRY but takes nothing off the queue."""
        hkid = self.h.ok("one.hook.allocate", USER_HOOK)
        self.h.ok("one.user.allocate", "bob", "pw", "")
        self.hm.result(hkid, 3, RESULT.replace("QQ==", "a1 a2") + "<REMOTE_HOST>h1</REMOTE_HOST>")
        self.hm.sent.clear()
        self.h.ok("one.hook.retry", hkid, 0)
        [doc] = self.hm.docs("RETRY")
        self.assertEqual(
            doc,
            f"<HOOK_MESSAGE><ARGUMENTS>{b64encode('a1 a2')}</ARGUMENTS><HOOK_ID>{hkid}</HOOK_ID>"
            "<REMOTE_HOST>h1</REMOTE_HOST></HOOK_MESSAGE>",
        )
        self.h.ok("one.user.allocate", "carol", "pw", "")
        self.hm.result(hkid, 0, RESULT + "<RETRY>yes</RETRY>")
        self.assertEqual(len(self.queued()), 1)
        log = self.h.ok("one.hooklog.info", -1, -1, hkid, 0)
        self.assertIn("<EXECUTION_ID>1</EXECUTION_ID>", log)
        self.assertIn("<RETRY>yes</RETRY>", log)


class StateEventTests(HookCase):
    def setUp(self) -> None:
        super().setUp()
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hid = self.h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.vm_drivers = FakeVmDrivers()
        lcm = use_drivers(self.h.core, self.vm_drivers)
        result_of(Deferred.fromCoroutine(lcm.start()))
        self.addCleanup(lcm.log_writer.stop)

    def settle(self) -> None:
        for _ in range(20):
            for _ in range(10):
                self.h.core.eventually.flush()
            if not self.vm_drivers.answer_all():
                break
        self.h.core.eventually.flush()

    def states(self, kind: str) -> list[tuple[str, str, str]]:
        out = []
        for doc in self.hm.docs():
            root = etree.fromstring(doc.encode())
            if root.findtext("HOOK_OBJECT") == kind:
                out.append(
                    (
                        root.findtext("RESOURCE_ID") or "",
                        root.findtext("STATE") or "",
                        root.findtext("LCM_STATE") or "",
                    )
                )
        return out

    def test_host_allocate(self) -> None:
        [doc] = [d for d in self.hm.docs() if "<HOOK_OBJECT>HOST</HOOK_OBJECT>" in d]
        self.assertTrue(
            doc.startswith(
                "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>HOST</HOOK_OBJECT>"
                f"<STATE>INIT</STATE><REMOTE_HOST>host01</REMOTE_HOST>"
                f"<RESOURCE_ID>{self.hid}</RESOURCE_ID><HOST><ID>{self.hid}</ID>"
            )
        )

    def test_vm_states_once_per_change(self) -> None:
        hkid = self.h.ok("one.hook.allocate", RUNNING_HOOK)
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.update", vid, 'A="b"', 1)  # no state change, no event
        self.assertEqual(
            self.states("VM"),
            [
                (str(vid), "PENDING", "LCM_INIT"),
                (str(vid), "ACTIVE", "PROLOG"),
                (str(vid), "ACTIVE", "BOOT"),
                (str(vid), "ACTIVE", "RUNNING"),
            ],
        )
        running = next(d for d in self.hm.docs() if "<LCM_STATE>RUNNING</LCM_STATE>" in d)
        self.assertIn("<REMOTE_HOST>host01</REMOTE_HOST><VM><ID>", running)
        self.assertEqual(schema_errors(running, "hook_message_state.xsd"), [])
        self.assertEqual(self.queued(), [(0, hkid)])
        self.hm.result(hkid, 0)
        self.assertEqual(self.queued(), [])
        self.action("poweroff", vid)
        self.assertEqual(
            self.states("VM")[-2:],
            [(str(vid), "ACTIVE", "SHUTDOWN_POWEROFF"), (str(vid), "POWEROFF", "LCM_INIT")],
        )

    def action(self, name: str, vid: int) -> None:
        self.h.ok("one.vm.action", name, vid)
        self.settle()


class QueueTests(HookCase):
    def test_resent_after_restart_driver_restart_and_hookpool_info(self) -> None:
        hkid = self.h.ok("one.hook.allocate", USER_HOOK)
        self.h.ok("one.user.allocate", "bob", "pw", "")
        [event] = [p for a, _, p in self.hm.sent if "<CALL>one.user.allocate" in b64decode(p)]
        # a new manager on the same database finds the event and sends it at start
        core = self.h.core
        fresh = HookManager(core)
        result_of(Deferred.fromCoroutine(fresh.load()))
        self.assertEqual(sorted(fresh.pending), [0])
        driver = self.start_hooks(fresh)
        self.assertEqual(driver.sent, [("EXECUTE", -1, event)])
        # the driver restarted
        driver.sent.clear()
        for callback in driver.reconnect:
            callback()
        self.assertEqual(driver.sent, [("EXECUTE", -1, event)])
        # an execution manager (re)loading its hooks
        driver.sent.clear()
        core.hook_manager = fresh
        self.h.ok("one.hookpool.info")
        self.h.ok("one.hookpool.info")
        self.assertEqual(driver.sent, [])
        self.h.clock.advance(RESEND_DELAY)
        self.assertEqual(driver.sent, [("EXECUTE", -1, event)])
        driver.result(hkid, 0)
        self.assertEqual(self.queued(), [])
        driver.sent.clear()
        for callback in driver.reconnect:
            callback()
        self.assertEqual(driver.sent, [])

    def test_deleted_hook_leaves_the_queue(self) -> None:
        hkid = self.h.ok("one.hook.allocate", USER_HOOK)
        for name in ("a", "b", "c"):
            self.h.ok("one.user.allocate", name, "pw", "")
        self.assertEqual(len(self.queued()), 3)
        self.h.ok("one.hook.delete", hkid)
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.h.core.hook_manager.pending, {})


class UnansweredTests(HookCase):
    def test_remote_hooks_without_a_host_and_changed_hooks_are_not_waited_for(self) -> None:
        """An execution manager never answers a REMOTE hook with no REMOTE_HOST (API
        events); a hook that changes stops waiting for what was queued for it."""
        remote = self.h.ok(
            "one.hook.allocate", USER_HOOK.replace('"users"', '"r"') + "\nREMOTE=yes"
        )
        hkid = self.h.ok("one.hook.allocate", USER_HOOK)
        self.h.ok("one.user.allocate", "bob", "pw", "")
        self.assertEqual(self.queued(), [(0, hkid)])
        self.assertNotEqual(remote, hkid)
        self.h.ok("one.hook.update", hkid, 'ARGUMENTS="$API extra"', 1)
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.h.core.hook_manager.pending, {})
