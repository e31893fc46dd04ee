"""one.hook.*, one.hookpool.info and one.hooklog.info: documents as oned's samples, oned's
texts for bad templates, update/rename/lock/delete/retry."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness, result_of
from tests.integration import xsd

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "samples"
T14 = (
    'NAME="sample-api-hook"\nTYPE="api"\nCALL="one.vm.allocate"\nCOMMAND="/usr/bin/true"\n'
    'ARGUMENTS="$API"'
)
T15 = (
    'NAME="sample-vm-running-hook"\nTYPE="state"\nRESOURCE="VM"\nON="RUNNING"\n'
    'COMMAND="/usr/bin/true"\nARGUMENTS="$TEMPLATE"\nTIMEOUT="30"'
)


def sample(name: str) -> str | None:
    path = SAMPLES / name
    return path.read_text() if path.exists() else None


class HookCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def record(self, hkid: int, rc: int, result: str) -> None:
        """A hook result as the driver reports it."""
        manager = self.one.core.hook_manager
        result_of(Deferred.fromCoroutine(manager.record(hkid, rc, result)))


RESULT = (
    "<ARGUMENTS>{args}</ARGUMENTS><EXECUTION_RESULT><COMMAND>/usr/bin/true</COMMAND>"
    "<STDOUT>b3V0</STDOUT><STDERR/><CODE>{rc}</CODE></EXECUTION_RESULT>"
)


class DocumentTests(HookCase):
    def test_samples(self) -> None:
        """allocate T14/T15, info, pool and log answer exactly what oned answered."""
        self.assertEqual(self.one.call("one.hook.allocate", T14), [True, 0, 0])
        self.assertEqual(self.one.call("one.hook.allocate", T15), [True, 1, 0])
        for oid, name in ((0, "one.hook.info.api.xml"), (1, "one.hook.info.vm-state.xml")):
            expected = sample(name)
            if expected is not None:
                self.assertEqual(self.one.ok("one.hook.info", oid), expected)
        expected = sample("one.hookpool.info.xml")
        if expected is not None:
            self.assertEqual(self.one.ok("one.hookpool.info"), expected)
            self.assertEqual(self.one.ok("one.hookpool.info", -2, -1, -1), expected)
        expected = sample("one.hooklog.info.all.xml")
        if expected is not None:
            self.assertEqual(self.one.ok("one.hooklog.info", 0, 2147483647, -1, 0), expected)
        missing = sample("one.hook.info.missing.json")
        if missing is not None:
            self.assertEqual(self.one.call("one.hook.info", 9999), json.loads(missing))

    def test_log_in_info_and_hooklog_filters(self) -> None:
        """Results become records with execution ids per hook, embedded in one.hook.info
        (schema-valid) and filtered by one.hooklog.info."""
        self.one.ok("one.hook.allocate", T14)
        self.one.ok("one.hook.allocate", T15)
        self.record(0, 0, RESULT.format(args="QQ==", rc=0))
        self.record(0, 1, RESULT.format(args="Qg==", rc=1))
        self.record(1, 0, RESULT.format(args="Qw==", rc=0))
        self.record(1, 0, "<ARGUMENTS>not closed")  # invalid XML: not stored
        info = self.one.ok("one.hook.info", 0)
        now = int(self.one.clock.seconds())
        first = (
            f"<HOOK_EXECUTION_RECORD><HOOK_ID>0</HOOK_ID><EXECUTION_ID>0</EXECUTION_ID>"
            f"<TIMESTAMP>{now}</TIMESTAMP>{RESULT.format(args='QQ==', rc=0)}"
            "</HOOK_EXECUTION_RECORD>"
        )
        self.assertIn(f"<HOOKLOG>{first}<HOOK_EXECUTION_RECORD><HOOK_ID>0</HOOK_ID>", info)
        self.assertIn("<EXECUTION_ID>1</EXECUTION_ID>", info)
        if xsd.available():
            self.assertEqual(xsd.errors(info), [])
        everything = self.one.ok("one.hooklog.info", -1, -1, -1, 0)
        self.assertEqual(everything.count("<HOOK_EXECUTION_RECORD>"), 3)
        self.assertLess(everything.index("<HOOK_ID>1</HOOK_ID>"), everything.index(first))
        failed = self.one.ok("one.hooklog.info", -1, -1, -1, -1)
        self.assertEqual(failed.count("<HOOK_EXECUTION_RECORD>"), 1)
        self.assertIn("<CODE>1</CODE>", failed)
        ok0 = self.one.ok("one.hooklog.info", -1, -1, 0, 1)
        self.assertEqual(ok0, f"<HOOKLOG>{first}</HOOKLOG>")
        self.assertEqual(self.one.ok("one.hooklog.info", now, -1, -1, 0), "<HOOKLOG></HOOKLOG>")
        self.assertEqual(self.one.ok("one.hooklog.info", -1, now, -1, 0), "<HOOKLOG></HOOKLOG>")

    def test_retention(self) -> None:
        """Only the last LOG_RETENTION records of a hook stay; ids keep counting."""
        self.one.ok("one.hook.allocate", T14)
        retention = self.one.core.hook_manager.hook_log.retention
        for i in range(retention + 3):
            self.record(0, 0, RESULT.format(args=f"{i}", rc=0))
        log = self.one.ok("one.hooklog.info", -1, -1, 0, 0)
        self.assertEqual(log.count("<HOOK_EXECUTION_RECORD>"), retention)
        self.assertNotIn("<EXECUTION_ID>2</EXECUTION_ID>", log)
        self.assertIn("<EXECUTION_ID>3</EXECUTION_ID>", log)
        self.assertIn(f"<EXECUTION_ID>{retention + 2}</EXECUTION_ID>", log)

    def test_hooklog_needs_oneadmin_group(self) -> None:
        self.one.ok("one.user.allocate", "alice", "pw", "")
        reply = self.one.call("one.hooklog.info", -1, -1, -1, 0, session="alice:pw")
        self.assertEqual(
            reply,
            [False, "[one.hooklog.info] User [2] not authorized to perform action on hook.",
             512, -1, -1],
        )  # fmt: skip


BAD_TEMPLATES = [
    ("NAME=a\nTYPE=Foo\nCOMMAND=x", "Invalid Hook type: foo"),
    ("NAME=a\nCOMMAND=x", "Invalid Hook type: "),
    ("TYPE=api\nCOMMAND=x\nCALL=one.vm.allocate", "Invalid name."),
    ("NAME=b\nTYPE=api\nCALL=one.vm.allocate", "No COMMAND in template for Hook."),
    (
        "NAME=b\nTYPE=api\nCOMMAND=x\nCALL=one.vm.info",
        "API call does not exist or is not supported: one.vm.info",
    ),
    (
        "NAME=b\nTYPE=api\nCOMMAND=x\nCALL=one.vm.nothing",
        "API call does not exist or is not supported: one.vm.nothing",
    ),
    ("NAME=b\nTYPE=api\nCOMMAND=x", "API call does not exist or is not supported: "),
    ("NAME=b\nTYPE=state\nCOMMAND=x", "RESOURCE attribute is required for STATE hooks."),
    ("NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=USER", "Invalid resource type: USER"),
    ("NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=VM\nON=boot", "Unkown state condition: BOOT"),
    ("NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=VM", "Unkown state condition: "),
    (
        "NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=VM\nON=CUSTOM\nSTATE=RUNNING",
        "Wrong STATE: RUNNING",
    ),
    (
        "NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=VM\nON=CUSTOM\nSTATE=active\nLCM_STATE=x",
        "Wrong LCM_STATE: X",
    ),
    ("NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=HOST\nSTATE=up", "Invalid STATE: UP"),
    ("NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=IMAGE", "Hook STATE attribute not found or invalid"),
    (
        "NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=IMAGE\nSTATE=init",
        "Invalid or unkown STATE condition: INIT",
    ),
    ("NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=NET\nSTATE=ready", "Invalid STATE: ready"),
    ("NAME=b\nTYPE=api\n=x", "Parse error: syntax error"),
]


class TemplateTests(HookCase):
    def test_bad_templates(self) -> None:
        """Each refused with oned's INTERNAL text; no id is used up."""
        self.one.ok("one.hook.allocate", T14)
        dup = self.one.call("one.hook.allocate", T14.replace("one.vm.allocate", "one.vm.action"))
        self.assertEqual(
            dup, [False, "[one.hook.allocate] NAME is already taken by Hook 0.", 8192, -1, -1]
        )
        for text, message in BAD_TEMPLATES:
            reply = self.one.call("one.hook.allocate", text)
            self.assertEqual(reply[0], False, text)
            self.assertTrue(str(reply[1]).startswith(f"[one.hook.allocate] {message}"), reply)
            self.assertEqual(reply[2], 8192, text)
        self.assertEqual(self.one.ok("one.hook.allocate", T15), 1)

    def test_normalised_templates(self) -> None:
        """ON resolves to STATE/LCM_STATE, states upper-cased as oned does, REMOTE YES/NO."""
        cases = {
            "NAME=a\nTYPE=STATE\nCOMMAND=x\nRESOURCE=VM\nON=custom\nSTATE=poweroff\n"
            "LCM_STATE=lcm_init\nREMOTE=yes": ("POWEROFF", "LCM_INIT", "YES"),
            "NAME=b\nTYPE=state\nCOMMAND=x\nRESOURCE=VM\nON=done": ("DONE", "LCM_INIT", "NO"),
            "NAME=c\nTYPE=state\nCOMMAND=x\nRESOURCE=HOST\nSTATE=error\nREMOTE=YES": (
                "ERROR",
                None,
                "YES",
            ),
            "NAME=d\nTYPE=state\nCOMMAND=x\nRESOURCE=IMAGE\nSTATE=ready": ("READY", None, "NO"),
            "NAME=e\nTYPE=state\nCOMMAND=x\nRESOURCE=NET\nSTATE=LOCK_CREATE": (
                "LOCK_CREATE",
                None,
                "NO",
            ),
        }
        for oid, (text, (state, lcm, remote)) in enumerate(cases.items()):
            self.assertEqual(self.one.ok("one.hook.allocate", text), oid)
            hook = self.one.core.hooks.get(oid)
            assert hook is not None
            self.assertEqual(hook.type, "state")
            self.assertEqual(hook.template.get("STATE"), state)
            self.assertEqual(hook.template.get("LCM_STATE"), lcm)
            self.assertEqual(hook.template.get("REMOTE"), remote)
            self.assertNotIn("ON", hook.template)
            self.assertNotIn("TYPE", hook.template)
            self.assertNotIn("NAME", hook.template)

    def test_update_rename_lock_delete(self) -> None:
        self.one.ok("one.hook.allocate", T14)
        self.one.ok("one.hook.allocate", T15)
        prefix = "[one.hook.update] Cannot update template. "
        self.assertEqual(
            self.one.call("one.hook.update", 0, 'CALL="one.vm.deploy"', 0),
            [False, prefix + "The COMMAND attribute is not defined.", 8192, -1, -1],
        )
        self.assertEqual(
            self.one.call("one.hook.update", 0, 'CALL="one.vm.info"', 1),
            [False, prefix + "The CALL attribute is not defined or it's invalid.", 8192, -1, -1],
        )
        self.assertEqual(
            self.one.call("one.hook.update", 1, 'LCM_STATE="nope"', 1),
            [
                False,
                prefix + "The LCM_STATE attribute is not defined or it's invalid.",
                8192,
                -1,
                -1,
            ],
        )
        self.assertEqual(
            self.one.ok("one.hook.update", 0, 'CALL="one.vm.deploy"\nREMOTE=yes', 1), 0
        )
        self.assertEqual(
            self.one.ok("one.hook.update", 1, 'STATE="poweroff"\nLCM_STATE=lcm_init', 1), 1
        )
        hook1 = self.one.ok("one.hook.info", 1)
        self.assertIn("<STATE><![CDATA[POWEROFF]]></STATE>", hook1)
        info = self.one.ok("one.hook.info", 0)
        self.assertIn("<CALL><![CDATA[one.vm.deploy]]></CALL>", info)
        self.assertIn("<REMOTE><![CDATA[YES]]></REMOTE>", info)
        self.assertEqual(
            self.one.call("one.hook.rename", 0, "sample-vm-running-hook"),
            [
                False,
                "[one.hook.rename] hook cannot be renamed to sample-vm-running-hook because "
                "it collides with hook 1",
                2048,
                -1,
                -1,
            ],
        )
        self.assertEqual(self.one.ok("one.hook.rename", 0, "renamed"), 0)
        self.assertEqual(self.one.ok("one.hook.lock", 0, 4, False), 0)
        self.assertIn("<LOCK><LOCKED>1</LOCKED>", self.one.ok("one.hook.info", 0))
        self.assertFalse(self.one.call("one.hook.delete", 0)[0])
        self.assertEqual(self.one.ok("one.hook.unlock", 0), 0)
        self.record(0, 0, RESULT.format(args="QQ==", rc=0))
        self.assertEqual(self.one.ok("one.hook.delete", 0), 0)
        self.assertEqual(self.one.ok("one.hooklog.info", -1, -1, 0, 0), "<HOOKLOG></HOOKLOG>")
        self.assertEqual(
            self.one.call("one.hook.info", 0),
            [False, "[one.hook.info] Error getting hook [0].", 1024, 0, -1],
        )
        self.assertEqual(self.one.ok("one.hook.allocate", T14), 2)

    def test_non_admin_cannot_create(self) -> None:
        self.one.ok("one.user.allocate", "alice", "pw", "")
        reply = self.one.call("one.hook.allocate", T14, session="alice:pw")
        self.assertFalse(reply[0])
        self.assertEqual(reply[2], 512)

    def test_retry(self) -> None:
        """Unknown executions are refused with oned's text; a known one is re-sent."""
        self.one.ok("one.hook.allocate", T14)
        self.assertEqual(
            self.one.call("one.hook.retry", 0, 0),
            [False, "[one.hook.retry] Invalid HookLog body. Arguments not found.", 8192, -1, -1],
        )
        self.assertEqual(
            self.one.call("one.hook.retry", 7, 0),
            [False, "[one.hook.retry] Error getting hook [7].", 1024, 7, -1],
        )
        self.record(0, 0, RESULT.format(args="arg1 arg2", rc=0))
        self.assertEqual(self.one.ok("one.hook.retry", 0, 0), 0)
