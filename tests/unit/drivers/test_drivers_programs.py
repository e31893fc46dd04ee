"""Byte-exact transcripts (drivers.md §2, §4) of our driver programs, run in-process.

Each program is loaded from drivers/mads and driven synchronously: lines in, bytes
out. Action scripts of drivers/remotes really run (they are tiny).
"""

from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import io
import os
import re
import shutil
import tempfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

from twisted.trial.unittest import SynchronousTestCase


def fresh_path(test: SynchronousTestCase) -> str:
    """A not-yet-existing path inside a private temporary directory."""
    parent = tempfile.mkdtemp(prefix="oned-drivers-")
    test.addCleanup(shutil.rmtree, parent, True)
    return os.path.join(parent, "t")


MADS = Path(__file__).resolve().parents[3] / "drivers" / "mads"


def load(name: str) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(f"_mad_{name}", str(MADS / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def zb64(text: str) -> str:
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


VMM_DATA = b64(
    "<VMM_DRIVER_ACTION_DATA><HOST>host0</HOST><MIGR_HOST/><DEPLOY_ID/>"
    "<SECURITY_GROUP_ID>3</SECURITY_GROUP_ID><VIRTUAL_NETWORK_ID>5</VIRTUAL_NETWORK_ID>"
    "<VM><ID>7</ID><NAME>testvm</NAME></VM><DATASTORE/></VMM_DRIVER_ACTION_DATA>"
)
DS_DATA = b64(
    "<DS_DRIVER_ACTION_DATA><IMAGE><PATH>/tmp/x</PATH></IMAGE><DATASTORE><ID>1</ID>"
    "<DS_MAD>dummy</DS_MAD><TM_MAD>dummy</TM_MAD><TYPE>0</TYPE></DATASTORE>"
    "</DS_DRIVER_ACTION_DATA>"
)
SYS_DS_DATA = b64(
    "<DS_DRIVER_ACTION_DATA><DATASTORE><ID>0</ID><DS_MAD>-</DS_MAD>"
    "<TM_MAD>dummy</TM_MAD><TYPE>1</TYPE></DATASTORE></DS_DRIVER_ACTION_DATA>"
)


class ProgramCase(SynchronousTestCase):
    program = ""

    def run_lines(self, *lines: str, argv: str = "", **kwargs: Any) -> str:
        out = io.BytesIO()
        module = load(self.program)
        built = module.build([argv], out=out, synchronous=True, **kwargs)
        driver = built[0] if isinstance(built, tuple) else built
        for line in lines:
            driver.feed(line.encode() + b"\n")
        return out.getvalue().decode()


class VMMDummyTests(ProgramCase):
    program = "one_vmm_dummy"

    def driver(self, actions_dir: str) -> tuple[Any, io.BytesIO]:
        out = io.BytesIO()
        module = load(self.program)
        driver, vmm = module.build(out=out, synchronous=True)
        vmm.actions_dir = actions_dir
        self.slept: list[float] = []
        vmm.sleep = self.slept.append
        return driver, out

    def test_verified_exchange(self) -> None:
        """The drivers.md §2.1 transcript, byte for byte."""
        driver, out = self.driver(fresh_path(self))
        for line in (
            "INIT",
            f"DEPLOY  7 {VMM_DATA}",
            f"SHUTDOWN  7 {VMM_DATA}",
            f"SNAPSHOTCREATE  7 {VMM_DATA}",
            f"BACKUP  7 {VMM_DATA}",
            f"UPDATESG  7 {VMM_DATA}",
            f"UPDATENIC  7 {VMM_DATA}",
            f"RESIZE  7 {VMM_DATA}",
        ):
            driver.feed(line.encode() + b"\n")
        self.assertEqual(
            out.getvalue(),
            b"INIT SUCCESS - -\n"
            b"DEPLOY SUCCESS 7 host0:testvm:dummy\n"
            b"SHUTDOWN SUCCESS 7 -\n"
            b"SNAPSHOTCREATE SUCCESS 7 dummy-snap\n"
            b"BACKUP SUCCESS 7 dummy-backup-id 1024\n"
            b"UPDATESG SUCCESS 7 3\n"
            b"UPDATENIC SUCCESS 7 5\n"
            b"RESIZE SUCCESS 7 -\n",
        )

    def test_failure_injection(self) -> None:
        """Outcome lines ``failure``, ``success 2``, ``-`` are used round-robin."""
        actions = Path(fresh_path(self))
        actions.mkdir()
        (actions / "deploy").write_text("failure\nsuccess 2\n-\n")
        driver, out = self.driver(str(actions))
        for _ in range(4):
            driver.feed(f"DEPLOY  8 {VMM_DATA}\n".encode())
        self.assertEqual(
            out.getvalue(),
            b"DEPLOY FAILURE 8 host0:testvm:dummy\n"
            b"DEPLOY SUCCESS 8 host0:testvm:dummy\n"
            b"DEPLOY  8 host0:testvm:dummy\n"
            b"DEPLOY FAILURE 8 host0:testvm:dummy\n",
        )
        self.assertEqual(self.slept, [2])

    def test_empty_action_file_gives_no_reply(self) -> None:
        """An empty outcome file makes the Ruby driver fail silently: no reply."""
        actions = Path(fresh_path(self))
        actions.mkdir()
        (actions / "shutdown").write_text("")
        driver, out = self.driver(str(actions))
        driver.feed(f"SHUTDOWN  8 {VMM_DATA}\n".encode())
        self.assertEqual(out.getvalue(), b"")

    def test_silent_drops(self) -> None:
        """Extra tokens, unknown actions, missing XML fields and a leading blank are
        dropped without a reply."""
        no_name = b64("<VMM_DRIVER_ACTION_DATA><HOST>h</HOST></VMM_DRIVER_ACTION_DATA>")
        driver, out = self.driver(fresh_path(self))
        for line in (
            f"SHUTDOWN  7 {VMM_DATA} extra",
            "POLLX  7 x",
            f"DEPLOY  7 {no_name}",
            f" DEPLOY 7 {VMM_DATA}",
            "DEPLOY  7 bm90IHhtbA==",
        ):
            driver.feed(line.encode() + b"\n")
        self.assertEqual(out.getvalue(), b"")

    def test_driver_cancel_logs(self) -> None:
        """DRIVER_CANCEL only logs ``Driver command for <id> cancelled``."""
        driver, out = self.driver(fresh_path(self))
        driver.feed(b"DRIVER_CANCEL  7 \n")
        self.assertEqual(out.getvalue(), b"LOG I 7 Driver command for 7 cancelled\n")

    def test_xml_entities(self) -> None:
        """Entities in the payload XML are decoded, as REXML does."""
        data = b64(
            "<VMM_DRIVER_ACTION_DATA><HOST>h&amp;1</HOST>"
            "<VM><NAME>a&lt;b&gt;&#233;</NAME></VM></VMM_DRIVER_ACTION_DATA>"
        )
        driver, out = self.driver(fresh_path(self))
        driver.feed(f"DEPLOY  3 {data}\n".encode())
        self.assertEqual(out.getvalue().decode(), "DEPLOY SUCCESS 3 h&1:a<b>\u00e9:dummy\n")

    def test_lowercase_action_and_id_echo(self) -> None:
        """Actions are upper-cased; the id token is echoed as sent."""
        driver, out = self.driver(fresh_path(self))
        driver.feed(f"reboot  007 {VMM_DATA}\n".encode())
        self.assertEqual(out.getvalue(), b"REBOOT SUCCESS 007 -\n")


class TMTests(ProgramCase):
    program = "one_tm"

    def test_transfers(self) -> None:
        """Prolog/epilog files run, missing files and drivers fail (drivers.md §2.2)."""
        base = Path(fresh_path(self))
        base.mkdir()
        prolog = base / "transfer.0.prolog"
        prolog.write_text(
            "# comment\n\nCLONE dummy fe:/src host0:/var/lib/one/datastores/0/7/disk.0 7 1\n"
            "MKSWAP dummy 1024 host0:/var/lib/one/datastores/0/7/disk.1 7 0\n"
        )
        empty = base / "transfer.1.epilog"
        empty.write_text("")
        ceph = base / "transfer.2.prolog"
        ceph.write_text("CLONE ceph a b 7 1\n")
        dotted = base / "transfer.3.prolog"
        dotted.write_text("CLONE.ssh dummy a b 7 1\n")
        out = self.run_lines(
            "INIT",
            f"TRANSFER  7 {prolog}",
            f"TRANSFER  8 {empty}",
            f"TRANSFER  9 {base}/nope",
            f"TRANSFER  10 {ceph}",
            f"TRANSFER  11 {dotted}",
            argv="-t 15 -d dummy",
        )
        self.assertEqual(
            out,
            "INIT SUCCESS - -\n"
            "TRANSFER SUCCESS 7 -\n"
            "TRANSFER SUCCESS 8 -\n"
            f"TRANSFER FAILURE 9 Transfer file '{base}/nope' does not exist\n"
            "TRANSFER FAILURE 10 Transfer Driver 'ceph' not available\n"
            "TRANSFER SUCCESS 11 -\n",
        )

    def test_failing_script_logs(self) -> None:
        """A failing script logs the command and its stderr; INFO is the stderr."""
        base = Path(fresh_path(self))
        base.mkdir()
        snap = base / "transfer.0.disk_snapshot"
        snap.write_text("SNAP_CREATE_LIVE dummy host0:/d/disk.0 0 7 0\n")
        out = self.run_lines(f"TRANSFER  7 {snap}", argv="-d dummy")
        self.assertRegex(
            out,
            r"^LOG I 7 Command execution failed \(exit code: 1\): \S+/tm/dummy/"
            r"snap_create_live host0:/d/disk.0 0 7 0\n"
            r"LOG I 7 snap_create_live: Operation not supported\n"
            r"TRANSFER FAILURE 7 snap_create_live: Operation not supported\n$",
        )


class DatastoreTests(ProgramCase):
    program = "one_datastore"

    def test_verified_exchange(self) -> None:
        """The drivers.md §2.4 transcript with the dummy datastore."""
        ceph = b64(
            "<DS_DRIVER_ACTION_DATA><DATASTORE><DS_MAD>ceph</DS_MAD></DATASTORE>"
            "</DS_DRIVER_ACTION_DATA>"
        )
        out = self.run_lines(
            f"STAT  0 {DS_DATA}",
            f"CP  3 {DS_DATA}",
            f"MKFS  4 {DS_DATA}",
            f"CLONE  5 {DS_DATA}",
            f"RM  3 {DS_DATA}",
            f"MONITOR  1 {DS_DATA}",
            f"MONITOR  0 {SYS_DS_DATA}",
            f"RESTORE  1 {DS_DATA}",
            f"CP  9 {ceph}",
            argv="-t 15 -d dummy -s dummy",
        )
        self.assertEqual(
            out,
            "STAT SUCCESS 0 1024\n"
            "CP SUCCESS 3 dummy_path dummy_format\n"
            "MKFS SUCCESS 4 dummy_path\n"
            "CLONE SUCCESS 5 dummy_path\n"
            "RM SUCCESS 3 -\n"
            "MONITOR SUCCESS 1 VVNFRF9NQj05NzIwClRPVEFMX01CPTIwNDgwCkZSRUVfTUI9MjA0ODAK\n"
            "MONITOR SUCCESS 0 "
            "VVNFRF9NQj0xNDI5OTIwCkZSRUVfTUI9MzMzMzI2MApUT1RBTF9NQj00Nzk2ODAwCg==\n"
            "RESTORE SUCCESS 1 0 dummy_image\n"
            "CP FAILURE 9 Datastore driver 'ceph' not available\n",
        )

    def test_missing_script(self) -> None:
        """The dummy has no increment_flatten: an ``Internal error`` FAILURE."""
        out = self.run_lines(f"INCREMENT_FLATTEN  2 {DS_DATA}", argv="-d dummy")
        self.assertIn("INCREMENT_FLATTEN FAILURE 2 Internal error No such file", out)


class IPAMTests(ProgramCase):
    program = "one_ipam"

    def test_verified_exchange(self) -> None:
        """REGISTER echoes the AR (base64), others answer ``LQ==`` (drivers.md §2.7)."""
        ar = b64(
            "<IPAM_DRIVER_ACTION_DATA><AR><TYPE>IP4</TYPE><IP>10.0.0.1</IP><SIZE>100</SIZE>"
            "<IPAM_MAD>dummy</IPAM_MAD></AR><ADDRESS><IP/><SIZE>1</SIZE></ADDRESS>"
            "</IPAM_DRIVER_ACTION_DATA>"
        )
        vnet = "PFZORVQ+PElEPjQ8L0lEPjxWTl9NQUQ+ZHVtbXk8L1ZOX01BRD48L1ZORVQ+"
        out = self.run_lines(
            f"REGISTER_ADDRESS_RANGE  12 {ar}",
            f"ALLOCATE_ADDRESS  12 {ar}",
            f"GET_ADDRESS  12 {ar}",
            f"VNET_CREATE  4 {vnet}",
            argv="-t 1 -i dummy",
        )
        lines = out.splitlines()
        registered = base64.b64decode(lines[0].split()[3]).decode()
        self.assertTrue(
            lines[0].startswith("REGISTER_ADDRESS_RANGE SUCCESS 12 ICAgICAgICBBUj1bCiAg")
        )
        self.assertEqual(
            registered,
            '        AR=[\n          TYPE="IP4",\n          SIZE="100",\n'
            '          IP="10.0.0.1",\n          IPAM_MAD="dummy"\n        ]\n',
        )
        self.assertEqual(lines[1], "ALLOCATE_ADDRESS SUCCESS 12 LQ==")
        address = base64.b64decode(lines[2].split()[3]).decode()
        self.assertRegex(address, r"^ADDRESS = \[ IP=10\.0\.0\.\d+, SIZE=1 \]\n$")
        self.assertEqual(lines[3], "VNET_CREATE SUCCESS 4 LQ==")

    def test_driver_errors_are_plain(self) -> None:
        """The driver's own errors are not base64."""
        aws = b64(
            "<IPAM_DRIVER_ACTION_DATA><AR><IPAM_MAD>aws</IPAM_MAD></AR></IPAM_DRIVER_ACTION_DATA>"
        )
        none = b64("<IPAM_DRIVER_ACTION_DATA><AR/></IPAM_DRIVER_ACTION_DATA>")
        out = self.run_lines(f"FREE_ADDRESS  1 {aws}", f"GET_ADDRESS  2 {none}", argv="-i dummy")
        self.assertEqual(
            out,
            "FREE_ADDRESS FAILURE 1 IPAM driver 'aws' not available.\n"
            "GET_ADDRESS FAILURE 2 Cannot perform get_address, cannot find ipam driver: "
            "undefined method `text' for nil:NilClass\n",
        )


class AuthTests(ProgramCase):
    program = "one_auth_mad"

    def test_verified_exchange(self) -> None:
        """The drivers.md §2.5 transcript (the core's blank line included)."""
        out = self.run_lines(
            "AUTHENTICATE  3 -1 dummy alice - czNjcmV0 ",
            "",
            "AUTHENTICATE  4 2 ldap bob pw eA== ",
            "AUTHORIZE  5 2 VM:-:CREATE:2:1 IMAGE:3:USE:0:0 0",
            "AUTHORIZE  6 2 VM:-:CREATE:2:1 1",
            "AUTHENTICATE  7 2 dummy bob pw eA== extra",
            argv="--authn dummy,plain",
        )
        self.assertEqual(
            out,
            "AUTHENTICATE SUCCESS 3 dummy alice s3cret\n"
            "AUTHENTICATE FAILURE 4 Authentication driver 'ldap' not available\n"
            "AUTHORIZE FAILURE 5 -\n"
            "AUTHORIZE SUCCESS 6 -\n",
        )

    def test_plain_driver_failure(self) -> None:
        """A failing authenticate script: LOG lines, then its stderr as INFO."""
        out = self.run_lines("AUTHENTICATE  8 2 plain bob pw eA== ", argv="--authn plain")
        self.assertEqual(
            re.sub(r"\S+/auth/plain", "P", out),
            "LOG I 8 Command execution failed (exit code: 255): P/authenticate\n"
            "LOG I 8 Invalid credentials\n"
            "AUTHENTICATE FAILURE 8 Invalid credentials\n",
        )


class SchedTests(ProgramCase):
    program = "one_sched"

    def test_dummy_never_places(self) -> None:
        """``PLACE SUCCESS 0 LQ==``: the reply id is 0, the empty plan is ``-``."""
        out = self.run_lines(
            "PLACE  -1 PFNDSEVEVUxFUl9EUklWRVJfQUNUSU9OLz4=",
            "OPTIMIZE  3 PFNDSEVEVUxFUl9EUklWRVJfQUNUSU9OLz4=",
            argv="-t 15 -p dummy -o dummy",
        )
        self.assertEqual(out, "PLACE SUCCESS 0 LQ==\nOPTIMIZE SUCCESS 3 LQ==\n")

    def test_missing_optimizer(self) -> None:
        """Both the placer and optimizer directories must exist."""
        self.assertRaises(RuntimeError, self.run_lines, argv="-p dummy -o missing")


class MarketTests(ProgramCase):
    program = "one_market"

    def test_actions(self) -> None:
        """MONITOR/IMPORT success INFO is base64; template-app DELETE is ``DELETE 0``."""
        app = b64(
            "<MARKET_DRIVER_ACTION_DATA><MARKETPLACEAPP><TYPE>1</TYPE><ORIGIN_ID>0"
            "</ORIGIN_ID></MARKETPLACEAPP><MARKETPLACE><MARKET_MAD>dummy</MARKET_MAD>"
            "</MARKETPLACE><IMAGE><ID>0</ID></IMAGE><DATASTORE><DS_MAD>dummy</DS_MAD>"
            "</DATASTORE></MARKET_DRIVER_ACTION_DATA>"
        )
        tmpl = b64(
            "<MARKET_DRIVER_ACTION_DATA><MARKETPLACEAPP><TYPE>2</TYPE></MARKETPLACEAPP>"
            "<MARKETPLACE><MARKET_MAD>dummy</MARKET_MAD></MARKETPLACE>"
            "</MARKET_DRIVER_ACTION_DATA>"
        )
        http = b64(
            "<MARKET_DRIVER_ACTION_DATA><MARKETPLACE><MARKET_MAD>http</MARKET_MAD>"
            "</MARKETPLACE></MARKET_DRIVER_ACTION_DATA>"
        )
        out = self.run_lines(
            f"MONITOR  0 {app}",
            f"DELETE  4 {tmpl}",
            f"MONITOR  1 {http}",
            f"IMPORT  3 {app}",
            argv="-t 15 -m dummy",
        )
        lines = out.splitlines(keepends=True)
        self.assertEqual(
            base64.b64decode(lines[0].split()[3]), b"USED_MB=0\nFREE_MB=1048576\nTOTAL_MB=1048576\n"
        )
        self.assertEqual(lines[1], "DELETE 0 4 \n")
        self.assertEqual(lines[2], "MONITOR FAILURE 1 Marketplace driver 'http' not available\n")
        self.assertEqual(lines[3], "MONITOR  1 \n")
        template = base64.b64decode(lines[4].split()[3]).decode()
        for name in ("SOURCE", "MD5", "FORMAT", "SIZE"):
            self.assertIn(f"{name}=", template)


class IMTests(ProgramCase):
    program = "one_im_exec"

    def test_init_and_errors(self) -> None:
        """INIT carries a timestamp; a bad action replies with an empty host id."""
        out = self.run_lines(
            "INIT",
            "START_MONITOR - 1 0 eJwrzs8rKc3PAwA=",
            argv="-r 3 -t 15 -w 90 dummy",
            local=True,
        )
        init, failure = out.splitlines()
        self.assertRegex(init, r"^INIT SUCCESS - \d+ -$")
        self.assertRegex(failure, r"^START_MONITOR FAILURE  \d+ \S+$")

    def test_stop_monitor(self) -> None:
        """STOP_MONITOR runs stop_monitord_client and answers zb64 ``-``."""
        action = zb64(
            "<MONITOR_DRIVER_ACTION><HOST><ID>42</ID><NAME>h42</NAME><IM_MAD>dummy</IM_MAD>"
            "</HOST><MONITOR_CONFIGURATION/></MONITOR_DRIVER_ACTION>"
        )
        out = self.run_lines(
            f"STOP_MONITOR - 42 0 {action}", "STOP_MONITOR - 42 0", argv="dummy", local=True
        )
        self.assertRegex(out, r"^STOP_MONITOR SUCCESS 42 \d+ eNrTBQAALgAu\n$")


class HookTests(ProgramCase):
    program = "one_hm"

    def test_keys(self) -> None:
        """Bus keys per event type, with OpenNebula's trailing spaces."""
        module = load(self.program)
        _, hooks = module.build([""], bind_sockets=False, out=io.BytesIO(), synchronous=True)
        published: list[str] = []
        hooks.publish = lambda key, content: published.append(key)
        state = b64(
            "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>VM</HOOK_OBJECT>"
            "<STATE>ACTIVE</STATE><LCM_STATE>RUNNING</LCM_STATE><RESOURCE_ID>7</RESOURCE_ID>"
            "<SERVICE_ID>2</SERVICE_ID><VM><STATE>3</STATE></VM></HOOK_MESSAGE>"
        )
        host = b64(
            "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>HOST</HOOK_OBJECT>"
            "<STATE>MONITORED</STATE><RESOURCE_ID>0</RESOURCE_ID></HOOK_MESSAGE>"
        )
        api = b64(
            "<HOOK_MESSAGE><HOOK_TYPE>API</HOOK_TYPE><CALL>one.vm.allocate</CALL>"
            "<CALL_INFO><RESULT>1</RESULT></CALL_INFO></HOOK_MESSAGE>"
        )
        hooks.execute("-1", [state])
        hooks.execute("-1", [host])
        hooks.execute("-1", [api])
        self.assertEqual(
            published,
            [
                "EVENT VM 7/ACTIVE/RUNNING ",
                "EVENT STATE VM/ACTIVE/RUNNING/7 ",
                "EVENT SERVICE 2 ",
                "EVENT HOST 0/MONITORED/ ",
                "EVENT STATE HOST/MONITORED//0 ",
                "EVENT API one.vm.allocate 1",
            ],
        )

    def test_results(self) -> None:
        """HEM results become ``EXECUTE SUCCESS|FAILURE <hook id> <rc> <b64>``."""
        out = io.BytesIO()
        module = load(self.program)
        _, hooks = module.build([""], bind_sockets=False, out=out, synchronous=True)
        self.assertEqual(hooks.result(b"0 5 PEFSR1VNRU5UUz4="), b"ACK")
        hooks.result(b"255 6 PEFS")
        self.assertEqual(
            out.getvalue(), b"EXECUTE SUCCESS 5 0 PEFSR1VNRU5UUz4=\nEXECUTE FAILURE 6 255 PEFS\n"
        )


class LibraryTests(SynchronousTestCase):
    def test_one_action_per_host(self) -> None:
        """single_host: a second action for a busy host waits; other hosts proceed."""
        import sys
        import threading
        import time

        sys.path.insert(0, str(MADS))
        import one_driver as od

        out = io.BytesIO()
        started: list[str] = []
        gates = {oid: threading.Event() for oid in ("10", "11", "12")}

        def handler(oid: str, host: str) -> None:
            started.append(oid)
            gates[oid].wait(5)
            driver.send("X", "SUCCESS", oid)

        driver = od.Driver(concurrency=15, single_host=True, host_of=lambda a: a.args[1], out=out)
        driver.register("X", handler, 2)
        for line in (b"X 10 hA\n", b"X 11 hA\n", b"X 12 hB\n"):
            driver.feed(line)

        def wait_for(predicate: Any) -> None:
            deadline = time.monotonic() + 5
            while not predicate() and time.monotonic() < deadline:
                time.sleep(0.005)

        wait_for(lambda: sorted(started) == ["10", "12"])
        self.assertEqual(sorted(started), ["10", "12"])
        gates["10"].set()
        wait_for(lambda: "11" in started)
        self.assertIn("11", started)
        gates["11"].set()
        gates["12"].set()
        wait_for(lambda: out.getvalue().count(b"\n") == 3)
        self.assertEqual(
            sorted(out.getvalue().splitlines()),
            [b"X SUCCESS 10 -", b"X SUCCESS 11 -", b"X SUCCESS 12 -"],
        )
