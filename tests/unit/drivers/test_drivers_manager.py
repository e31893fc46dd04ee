"""Tests for oned.drivers.manager and oned.managers.auth with fake processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.config import OnedConfig, parse_config_text
from oned.drivers.families import Family
from oned.drivers.manager import DriverManager
from oned.drivers.message import DriverMessage
from oned.drivers.process import DriverStartError, DriverState
from oned.locations import Locations
from oned.managers.auth import AuthManager, parse_authn_result
from oned.testing.fake_driver import FakeDriver, Outcome
from oned.testing.fake_process import FakeProcess, FakeProcessReactor


def fresh_path(test: SynchronousTestCase) -> str:
    """A not-yet-existing path inside a private temporary directory."""
    parent = tempfile.mkdtemp(prefix="oned-drivers-")
    test.addCleanup(shutil.rmtree, parent, True)
    return os.path.join(parent, "t")


CONF = """
VM_MAD = [ NAME = "dummy", EXECUTABLE = "one_vmm_dummy", TYPE = "xml" ]
VM_MAD = [ NAME = "kvm", EXECUTABLE = "one_vmm_exec", ARGUMENTS = "-t 15 -r 0 kvm -p" ]
IM_MAD = [ NAME = "dummy", EXECUTABLE = "one_im_sh", ARGUMENTS = "-r 3 -t 15 -w 90 dummy" ]
TM_MAD = [ EXECUTABLE = "one_tm", ARGUMENTS = "-t 15 -d dummy" ]
TM_MAD = [ EXECUTABLE = "ignored_second_tm" ]
DATASTORE_MAD = [ EXECUTABLE = "one_datastore", ARGUMENTS = "-t 15 -d dummy -s dummy" ]
AUTH_MAD = [ EXECUTABLE = "one_auth_mad", AUTHN = "dummy,ldap", AUTHZ = "" ]
IPAM_MAD = [ EXECUTABLE = "one_ipam", ARGUMENTS = "-t 1 -i dummy" ]
SCHED_MAD = [ EXECUTABLE = "one_sched", ARGUMENTS = "-p dummy -o dummy" ]
HM_MAD = [ EXECUTABLE = "one_hm" ]
MARKET_MAD = [ EXECUTABLE = "one_market", ARGUMENTS = "-m dummy" ]
"""

PROGRAMS = (
    "one_vmm_dummy",
    "one_vmm_exec",
    "one_im_sh",
    "one_tm",
    "one_datastore",
    "one_auth_mad",
    "one_ipam",
    "one_sched",
    "one_hm",
    "one_market",
)


class _Fixture(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(fresh_path(self))
        self.locations = Locations.from_env({"ONE_LOCATION": str(self.root)})
        self.locations.mads.mkdir(parents=True)
        for name in PROGRAMS:
            exe = self.locations.mads / name
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
        self.reactor = FakeProcessReactor()
        self.fakes: dict[str, FakeDriver] = {}
        self.reactor.default_responder = self.respond

    def respond(self, process: FakeProcess) -> None:
        name = Path(str(process.executable)).name
        family = {
            "one_tm": Family.TM,
            "one_datastore": Family.IMAGE,
            "one_auth_mad": Family.AUTH,
            "one_ipam": Family.IPAM,
            "one_sched": Family.SCHED,
            "one_hm": Family.HOOK,
            "one_market": Family.MARKET,
            "one_im_sh": Family.MONITOR,
        }.get(name, Family.VMM)
        fake = self.fakes.get(name)
        if fake is None:
            init = b"INIT SUCCESS - 1 -\n" if family is Family.MONITOR else b"INIT SUCCESS - -\n"
            fake = self.fakes[name] = FakeDriver(self.reactor, family, init_reply=init)
        fake.attach(process)

    def config(self, text: str = CONF) -> OnedConfig:
        return parse_config_text(text, self.locations)

    def started(self, text: str = CONF) -> DriverManager:
        manager = DriverManager(self.config(text), self.reactor, environ={"PATH": "/bin"})
        d = Deferred.fromCoroutine(manager.start())
        self.reactor.advance(0)
        self.successResultOf(d)
        return manager


class ManagerTests(_Fixture):
    def test_builds_drivers_like_oned(self) -> None:
        """VM/IM drivers keep NAME; single-driver families use the first section."""
        manager = DriverManager(self.config(), self.reactor)
        self.assertEqual([d.name for d in manager.drivers(Family.VMM)], ["dummy", "kvm"])
        self.assertEqual(manager.get(Family.TM).name, "transfer_exe")  # type: ignore[union-attr]
        self.assertEqual(len(manager.drivers(Family.TM)), 1)
        self.assertIsNotNone(manager.get(Family.MONITOR, "dummy"))
        self.assertIsNone(manager.get(Family.IM))
        names = {d.name for d in manager.drivers()}
        for internal in (
            "image_exe",
            "auth_exe",
            "ipam_exe",
            "sched_exe",
            "hook_exe",
            "market_exe",
        ):
            self.assertIn(internal, names)

    def test_auth_arguments(self) -> None:
        """AUTH_MAD gets ``--authn <list>`` (``--authz`` only when set)."""
        manager = DriverManager(self.config(), self.reactor)
        self.assertEqual(manager.get(Family.AUTH).arguments, "--authn dummy,ldap")  # type: ignore[union-attr]
        self.assertEqual(
            DriverManager.auth_arguments({"AUTHN": "a", "AUTHZ": "z"}),
            "--authn a --authz z",
        )

    def test_start_spawns_every_driver(self) -> None:
        """start() writes var/config and spawns [exe, ARGUMENTS] for each driver."""
        self.started()
        spawned = {Path(str(p.executable)).name: p.args for p in self.reactor.processes}
        self.assertEqual(len(spawned), 10)
        exe = str(self.locations.mads / "one_vmm_exec")
        self.assertEqual(spawned["one_vmm_exec"], [exe, "-t 15 -r 0 kvm -p"])
        self.assertEqual(spawned["one_vmm_dummy"][1], "")
        config = (self.locations.var / "config").read_text()
        self.assertIn("SCRIPTS_REMOTE_DIR=/var/tmp/one\n", config)
        self.assertIn("TM_MAD=EXECUTABLE=one_tm,ARGUMENTS=-t 15 -d dummy\n", config)
        env = self.reactor.processes[0].env
        self.assertEqual(env["ONE_LOCATION"], str(self.root))  # type: ignore[index]

    def test_missing_program_fails_start(self) -> None:
        """A missing driver program aborts the start without spawning anything."""
        (self.locations.mads / "one_tm").unlink()
        manager = DriverManager(self.config(), self.reactor, fallback_mads=None, prefix_mads=None)
        d = Deferred.fromCoroutine(manager.start())
        self.assertIn(
            "File not exists",
            self.failureResultOf(d, DriverStartError).getErrorMessage(),
        )
        self.assertEqual(self.reactor.processes, [])

    def test_checkout_fallback(self) -> None:
        """Programs missing from lib/mads are taken from the fallback directory."""
        (self.locations.mads / "one_tm").unlink()
        fallback = Path(fresh_path(self))
        fallback.mkdir()
        (fallback / "one_tm").write_text("#!/bin/sh\n")
        (fallback / "one_tm").chmod(0o755)
        manager = DriverManager(self.config(), self.reactor, fallback_mads=fallback)
        self.assertEqual(manager.get(Family.TM).executable, str(fallback / "one_tm"))  # type: ignore[union-attr]

    def test_init_failure_stops_the_others(self) -> None:
        """One driver failing INIT fails start() after 10 s at most; others get FINALIZE."""
        self.fakes["one_ipam"] = FakeDriver(self.reactor, Family.IPAM, init_reply=None)
        manager = DriverManager(self.config(), self.reactor)
        d = Deferred.fromCoroutine(manager.start())
        self.reactor.advance(0)
        self.assertNoResult(d)
        self.reactor.advance(10)
        self.reactor.advance(0)
        failure = self.failureResultOf(d, DriverStartError)
        self.assertIn("ipam_exe: Driver initialization time out", failure.getErrorMessage())
        tm = [p for p in self.reactor.processes if str(p.executable).endswith("one_tm")][0]
        self.assertIn(b"FINALIZE\n", tm.written)
        self.assertTrue(all(d.state is DriverState.STOPPED for d in manager.drivers()))

    def test_stop_finalizes_all(self) -> None:
        """stop() sends FINALIZE to every driver."""
        manager = self.started()
        d = Deferred.fromCoroutine(manager.stop())
        self.reactor.advance(0)
        self.successResultOf(d)
        self.assertTrue(all(p.ended for p in self.reactor.processes))
        self.assertTrue(all(p.written[-1] == b"FINALIZE\n" for p in self.reactor.processes))

    def test_request_ids_count_per_family(self) -> None:
        """Synthetic ids start at 0 and count per family; '-' info becomes ''."""
        manager = self.started()
        self.fakes["one_ipam"].script("GET_ADDRESS", Outcome(info="QUREUg=="))
        first = Deferred.fromCoroutine(manager.request(Family.IPAM, "GET_ADDRESS", "PElQQU0+"))
        second = Deferred.fromCoroutine(manager.request(Family.IPAM, "FREE_ADDRESS", "PElQQU0+"))
        stat = Deferred.fromCoroutine(manager.request(Family.IMAGE, "STAT", "PERT"))
        self.reactor.advance(0)
        self.assertEqual(self.successResultOf(first), (True, "QUREUg=="))
        self.assertEqual(self.successResultOf(second), (True, ""))
        self.assertEqual(self.successResultOf(stat), (True, ""))
        ipam = [m.oid for m in self.fakes["one_ipam"].received]
        self.assertEqual(ipam, [0, 1])
        self.assertEqual(self.fakes["one_datastore"].received[0].oid, 0)

    def test_request_without_driver(self) -> None:
        """A family without driver answers at once."""
        manager = DriverManager(
            self.config('VM_MAD = [ NAME="dummy", EXECUTABLE="one_vmm_dummy" ]'),
            self.reactor,
        )
        d = Deferred.fromCoroutine(manager.request(Family.AUTH, "AUTHENTICATE", "x"))
        self.assertEqual(self.successResultOf(d), (False, "Could not find AUTH driver"))

    def test_register_action_routes_replies(self) -> None:
        """Handlers registered per family receive that family's replies."""
        manager = self.started()
        got: list[DriverMessage] = []
        manager.register_action(Family.TM, "TRANSFER", got.append)
        manager.send(Family.TM, "TRANSFER", 7, "/var/lib/one/vms/7/transfer.0.prolog")
        self.assertEqual(
            self.fakes["one_tm"].process.written[-1],  # type: ignore[union-attr]
            b"TRANSFER  7 /var/lib/one/vms/7/transfer.0.prolog\n",
        )
        self.reactor.advance(0)
        self.assertEqual(got, [DriverMessage("TRANSFER", "SUCCESS", 7, "-")])

    def test_vm_log_lines(self) -> None:
        """VMM LOG lines with an id go to that VM's vm.log when it exists."""
        self.started()
        vm_dir = self.locations.var / "vms" / "7"
        vm_dir.mkdir(parents=True)
        self.fakes["one_vmm_dummy"].send(
            b"LOG I 7 Driver command for 7 cancelled\nLOG E 8 no vm dir\n"
        )
        text = (vm_dir / "vm.log").read_text()
        self.assertRegex(
            text,
            r"^\w{3} \w{3} +\d+ [\d:]{8} \d{4} \[Z0\]\[VMM\]\[I\]: "
            r"Driver command for 7 cancelled\n$",
        )

    def test_monitor_dialect_request(self) -> None:
        """The IM driver gets ``START_MONITOR - <hid> 0 <zb64>`` lines."""
        manager = self.started()
        got: list[DriverMessage] = []
        manager.register_action(Family.MONITOR, "START_MONITOR", got.append)
        manager.send(Family.MONITOR, "START_MONITOR", 3, "<MONITOR_DRIVER_ACTION/>", name="dummy")
        line = self.fakes["one_im_sh"].process.written[-1]  # type: ignore[union-attr]
        self.assertTrue(line.startswith(b"START_MONITOR - 3 0 eN"))
        self.reactor.advance(0)
        self.assertEqual(got[0].action, "START_MONITOR")
        self.assertEqual(got[0].payload, "-")


class AuthManagerTests(_Fixture):
    def test_authenticate_bytes(self) -> None:
        """AUTHENTICATE is written exactly as oned writes it, blank line included."""
        manager = self.started()
        self.fakes["one_auth_mad"].script("AUTHENTICATE", Outcome(info="dummy alice s3cret"))
        auth = AuthManager(manager)
        d = Deferred.fromCoroutine(auth.authenticate(-1, "dummy", "alice", "", "s3cret"))
        self.assertEqual(
            self.fakes["one_auth_mad"].process.written[-1],  # type: ignore[union-attr]
            b"AUTHENTICATE  0 -1 dummy alice - czNjcmV0 \n\n",
        )
        self.reactor.advance(0)
        self.assertEqual(self.successResultOf(d), (True, "dummy alice s3cret"))

    def test_authenticate_timeout(self) -> None:
        """A driver that never answers fails the login after 90 s."""
        manager = self.started()
        self.fakes["one_auth_mad"].script("AUTHENTICATE", Outcome(reply=False))
        d = Deferred.fromCoroutine(AuthManager(manager).authenticate(2, "ldap", "bob", "pw", "x"))
        self.reactor.advance(89)
        self.assertNoResult(d)
        self.reactor.advance(1)
        self.assertEqual(self.successResultOf(d), (False, "Request timeout"))

    def test_authenticate_whitespace_fails_fast(self) -> None:
        """Fields with blanks would be dropped by the driver: fail at once."""
        manager = self.started()
        d = Deferred.fromCoroutine(
            AuthManager(manager).authenticate(2, "ldap", "bob smith", "", "x")
        )
        self.assertFalse(self.successResultOf(d)[0])

    def test_authorize_bytes(self) -> None:
        """AUTHORIZE carries the requests and the core's own verdict last."""
        manager = self.started()
        d = Deferred.fromCoroutine(
            AuthManager(manager).authorize(2, ["VM:-:CREATE:2:1", "IMAGE:3:USE:0:0"], False)
        )
        self.assertEqual(
            self.fakes["one_auth_mad"].process.written[-1],  # type: ignore[union-attr]
            b"AUTHORIZE  0 2 VM:-:CREATE:2:1 IMAGE:3:USE:0:0 0\n\n",
        )
        self.reactor.advance(0)
        self.assertTrue(self.successResultOf(d)[0])

    def test_parse_authn_result(self) -> None:
        """``driver user secret [gid|*gid]`` with the core's stream quirks."""
        res = parse_authn_result("ldap bob c2VjcmV0 100 *101")
        self.assertEqual((res.driver, res.username, res.secret), ("ldap", "bob", "c2VjcmV0"))
        self.assertEqual(
            (res.group_ids, res.admin_group_ids, res.primary_gid),
            ([100, 101], [101], 100),
        )
        self.assertEqual(parse_authn_result("dummy alice s3cret").group_ids, [])
        self.assertRaises(ValueError, parse_authn_result, "d u s x1")
        self.assertRaises(ValueError, parse_authn_result, "d u s ")
