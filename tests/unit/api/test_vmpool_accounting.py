"""one.vmpool.accounting, one.vmpool.showback/calculateshowback and the monitoring
listings (one.vm.monitoring, one.vmpool.monitoring), through the real request manager
and lifecycle managers with scripted VMM/TM drivers, on the fake clock."""

from __future__ import annotations

import base64
import calendar
import os
import re
import time

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.managers.lifecycle.monitor import monitor_vms
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.managers.lifecycle.wiring import use_drivers
from oned.pools import vm as pools_vm
from oned.testing.rpc import OnedHarness, result_of

HOUR = 3600
COSTED = 'NAME="v"\nCPU="1"\nVCPU="1"\nMEMORY="1024"\nCPU_COST="2"\nMEMORY_COST="0.5"'
RECORD = re.compile(
    r"<HISTORY><OID>(\d+)</OID><SEQ>(\d+)</SEQ>.*?<STIME>(\d+)</STIME><ETIME>(\d+)</ETIME>"
)


def utc(test: SynchronousTestCase) -> None:
    """Months are local time (oned's mktime/localtime_r): pin the zone to UTC."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()

    def restore() -> None:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()

    test.addCleanup(restore)


class VmPoolCase(SynchronousTestCase):
    extra_config = ""

    def setUp(self) -> None:
        utc(self)
        self.h = OnedHarness(self.extra_config)
        self.addCleanup(self.h.close)
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hid = self.h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.drivers = FakeVmDrivers()
        lcm = use_drivers(self.h.core, self.drivers)
        result_of(Deferred.fromCoroutine(lcm.start()))
        self.addCleanup(lcm.log_writer.stop)

    def settle(self) -> None:
        for _ in range(20):
            for _ in range(10):
                self.h.core.eventually.flush()
            if not self.drivers.answer_all():
                break
        for _ in range(10):
            self.h.core.eventually.flush()

    def running(self, template: str = COSTED, session: str | None = None) -> int:
        vid = int(self.h.ok("one.vm.allocate", template, session=session))
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        return vid

    def act(self, action: str, vid: int) -> None:
        self.assertEqual(self.h.call("one.vm.action", action, vid)[0], True)
        self.settle()

    def user(self, name: str) -> str:
        uid = self.h.ok("one.user.allocate", name, "pw", "core", [])
        self.h.ok("one.user.chgrp", uid, 1)
        return f"{name}:pw"


class AccountingTests(VmPoolCase):
    def test_records_in_vid_seq_order_with_the_vm_inside(self) -> None:
        """Every record of every VM, oldest first, each with the VM of that moment."""
        self.patch(pools_vm, "CHUNK", 2)  # pieces of two records, escaped in the DB thread
        a = self.running()
        b = self.running()
        self.h.clock.advance(2 * HOUR)
        self.act("poweroff-hard", a)
        self.h.clock.advance(HOUR)
        self.act("resume", a)
        doc = self.h.ok("one.vmpool.accounting", -2, -1, -1)
        t0 = 1_700_000_000
        self.assertEqual(
            RECORD.findall(doc),
            [
                (str(a), "0", str(t0), str(t0 + 3 * HOUR)),
                (str(a), "1", str(t0 + 3 * HOUR), "0"),
                (str(b), "0", str(t0), "0"),
            ],
        )
        root = etree.fromstring(doc.encode())
        self.assertEqual(root.tag, "HISTORY_RECORDS")
        first = root.find("HISTORY")
        assert first is not None
        self.assertEqual([c.tag for c in first][-2:], ["REQUEST_ID", "VM"])
        self.assertEqual(first.findtext("VM/ID"), str(a))
        self.assertIsNotNone(first.find("VM/HISTORY_RECORDS"))
        self.assertEqual(len(first.findall("VM/HISTORY_RECORDS/HISTORY")), 0)

    def test_time_window(self) -> None:
        """start keeps records ending after it (or open), end those starting before it."""
        a = self.running()
        self.h.clock.advance(HOUR)
        self.act("poweroff-hard", a)
        self.h.clock.advance(HOUR)
        self.act("resume", a)
        t0 = 1_700_000_000

        def seqs(start: int, end: int) -> list[str]:
            doc = self.h.ok("one.vmpool.accounting", -2, start, end)
            return [m[1] for m in RECORD.findall(doc)]

        self.assertEqual(seqs(-1, -1), ["0", "1"])
        self.assertEqual(seqs(t0 + HOUR, -1), ["0", "1"])
        self.assertEqual(seqs(t0 + 2 * HOUR, -1), ["1"])
        self.assertEqual(seqs(-1, t0 + 2 * HOUR), ["0"])
        self.assertEqual(seqs(-1, t0 + 2 * HOUR + 1), ["0", "1"])
        self.assertEqual(seqs(-1, t0), [])
        self.assertEqual(seqs(-7, -1), ["0", "1"])
        self.assertEqual(seqs(-1, -7), [])

    def test_filter_flag_and_errors(self) -> None:
        """Filters as other pools: a user sees only its own VMs' records."""
        own = self.user("alice")
        self.running()
        mine = self.running('NAME="a"\nCPU="0.1"\nMEMORY="64"', session=own)
        doc = self.h.ok("one.vmpool.accounting", -2, -1, -1, session=own)
        self.assertEqual([m[0] for m in RECORD.findall(doc)], [str(mine)])
        doc = self.h.ok("one.vmpool.accounting", 0, -1, -1)
        self.assertEqual([m[0] for m in RECORD.findall(doc)], ["0"])
        self.assertEqual(
            self.h.call("one.vmpool.accounting", -5, -1, -1),
            [False, "[one.vmpool.accounting] Incorrect filter_flag", 0x1000, -1, -1],
        )
        self.assertEqual(
            self.h.ok("one.vmpool.accounting", -3, -1, -1, session=self.user("bob")),
            "<HISTORY_RECORDS></HISTORY_RECORDS>",
        )


class ShowbackTests(VmPoolCase):
    def test_costs_hours_and_running_hours(self) -> None:
        """CPU/MEMORY cost times the record's hours; RHOURS only while running."""
        a = self.running()
        self.h.clock.advance(2 * HOUR)
        self.act("poweroff-hard", a)
        self.h.clock.advance(HOUR)
        self.act("resume", a)
        self.h.clock.advance(HOUR)
        self.assertEqual(self.h.call("one.vmpool.calculateshowback", 11, 2023, 11, 2023)[:3],
                         [True, " ", 0])  # fmt: skip
        self.assertEqual(
            self.h.ok("one.vmpool.showback", -2, 11, 2023, 11, 2023),
            "<SHOWBACK_RECORDS><SHOWBACK><VMID>0</VMID><VMNAME>v</VMNAME><UID>0</UID>"
            "<GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><YEAR>2023</YEAR>"
            "<MONTH>11</MONTH><CPU_COST>8</CPU_COST><MEMORY_COST>2048</MEMORY_COST>"
            "<DISK_COST>0</DISK_COST><TOTAL_COST>2056</TOTAL_COST><HOURS>4</HOURS>"
            "<RHOURS>3</RHOURS></SHOWBACK></SHOWBACK_RECORDS>",
        )
        rows = self.h.core.db._conn.execute("SELECT vmid, year, month FROM vm_showback").fetchall()
        self.assertEqual(rows, [(0, 2023, 11)])

    def test_months_split_and_listing_window(self) -> None:
        """A record over a month change is cut at the first of the month (local time);
        showback lists by year, month, VM id within the (month, year) window."""
        self.patch(pools_vm, "SHOWBACK_CHUNK", 1)  # records read one per DB call
        dec_first = calendar.timegm((2023, 12, 1, 0, 0, 0))
        self.h.clock.advance(dec_first - HOUR - self.h.core.now())
        a = self.running()
        b = self.running('NAME="w"\nCPU="0.5"\nMEMORY="512"\nCPU_COST="1"')
        self.h.clock.advance(3 * HOUR)
        self.h.ok("one.vmpool.calculateshowback", -1, -1, -1, -1)
        doc = self.h.ok("one.vmpool.showback", -2, -1, -1, -1, -1)
        found = re.findall(
            r"<VMID>(\d+)</VMID>.*?<YEAR>(\d+)</YEAR><MONTH>(\d+)</MONTH>"
            r"<CPU_COST>([\d.]+)</CPU_COST>.*?<HOURS>([\d.]+)</HOURS>",
            doc,
        )
        self.assertEqual(
            found,
            [
                (str(a), "2023", "11", "2", "1"),
                (str(b), "2023", "11", "0.50", "1"),
                (str(a), "2023", "12", "4", "2"),
                (str(b), "2023", "12", "1", "2"),
            ],
        )
        december = self.h.ok("one.vmpool.showback", -2, 12, 2023, -1, -1)
        self.assertEqual(december.count("<SHOWBACK>"), 2)
        self.assertNotIn("<MONTH>11</MONTH>", december)
        november = self.h.ok("one.vmpool.showback", -2, -1, -1, 11, 2023)
        self.assertEqual(november.count("<MONTH>11</MONTH>"), 2)
        self.assertEqual(november.count("<SHOWBACK>"), 2)


class ShowbackConfigTests(VmPoolCase):
    extra_config = (
        'SHOWBACK_ONLY_RUNNING = "YES"\n'
        'DEFAULT_COST = [CPU_COST = "0.1", MEMORY_COST = "0", DISK_COST = "0"]'
    )

    def test_defaults_and_only_running(self) -> None:
        """DEFAULT_COST stands in for missing costs (fractions print with 2 decimals);
        SHOWBACK_ONLY_RUNNING counts CPU/MEMORY over the running time only."""
        a = self.running('NAME="d"\nCPU="0.5"\nMEMORY="64"')
        self.h.clock.advance(HOUR)
        self.act("poweroff-hard", a)
        self.h.clock.advance(HOUR)
        self.h.ok("one.vmpool.calculateshowback", 11, 2023, 11, 2023)
        doc = self.h.ok("one.vmpool.showback", -2, 11, 2023, 11, 2023)
        self.assertIn("<CPU_COST>0.05</CPU_COST><MEMORY_COST>0</MEMORY_COST>", doc)
        self.assertIn("<HOURS>2</HOURS><RHOURS>1</RHOURS>", doc)


class ShowbackAuthTests(VmPoolCase):
    def test_oneadmin_group_only_and_filters(self) -> None:
        own = self.user("carol")
        self.running()
        mine = self.running('NAME="c"\nCPU="0.1"\nMEMORY="64"', session=own)
        self.h.clock.advance(HOUR)
        self.assertEqual(
            self.h.call("one.vmpool.calculateshowback", -1, -1, -1, -1, session=own),
            [
                False,
                "[one.vmpool.calculateshowback] User [2] : Action reserved for group 0 only.",
                0x200,
                -1,
                -1,
            ],
        )
        self.h.ok("one.vmpool.calculateshowback", -1, -1, -1, -1)
        doc = self.h.ok("one.vmpool.showback", -2, -1, -1, -1, -1, session=own)
        self.assertEqual(re.findall(r"<VMID>(\d+)</VMID>", doc), [str(mine)])
        self.assertEqual(
            self.h.call("one.vmpool.showback", -9, -1, -1, -1, -1)[:3],
            [False, "[one.vmpool.showback] Incorrect filter_flag", 0x1000],
        )


class MonitoringTests(VmPoolCase):
    extra_config = "VM_MONITORING_EXPIRATION_TIME = 600"

    def report(self, vid: int, cpu: int) -> None:
        mon = base64.b64encode(f"CPU={cpu}\nMEMORY=1024\n".encode()).decode()
        text = f'VM=[ID="{vid}", DEPLOY_ID="x", MONITOR="{mon}"]'
        now = self.h.core.now()
        result_of(Deferred.fromCoroutine(monitor_vms(self.h.core, self.hid, text, now)))

    def cpus(self, doc: str) -> list[tuple[str, str]]:
        return re.findall(r"<CPU><!\[CDATA\[(\d+)\]\]></CPU><ID><!\[CDATA\[(\d+)\]\]>", doc)

    def test_seconds_last_and_expiration(self) -> None:
        """0: last sample per VM; -1: all; N: newer than now-N; expired ones are gone."""
        a = self.running()
        b = self.running()
        for cpu in (1, 2, 3):
            self.report(a, cpu)
            self.report(b, cpu * 10)
            self.h.clock.advance(100)
        pool = lambda s: self.cpus(self.h.ok("one.vmpool.monitoring", -2, s))  # noqa: E731
        self.assertEqual(pool(0), [("3", str(a)), ("30", str(b))])
        self.assertEqual(len(pool(-1)), 6)
        self.assertEqual(pool(-1)[:3], [("1", str(a)), ("2", str(a)), ("3", str(a))])
        self.assertEqual(pool(150), [("3", str(a)), ("30", str(b))])
        self.assertEqual(pool(200), [("3", str(a)), ("30", str(b))])
        self.assertEqual(len(pool(201)), 4)
        self.assertEqual(pool(-7), [])
        self.assertEqual(self.cpus(self.h.ok("one.vm.monitoring", b)), [
            ("10", str(b)), ("20", str(b)), ("30", str(b))])  # fmt: skip
        self.h.clock.advance(350)  # the first samples are now 650 s old
        self.assertEqual(self.cpus(self.h.ok("one.vm.monitoring", b)), [
            ("20", str(b)), ("30", str(b))])  # fmt: skip
        self.h.clock.advance(1000)
        self.assertEqual(
            self.h.ok("one.vmpool.monitoring", -2, 0), "<MONITORING_DATA></MONITORING_DATA>"
        )
        own = self.user("dave")
        self.assertEqual(self.h.ok("one.vmpool.monitoring", -2, -1, session=own),
                         "<MONITORING_DATA></MONITORING_DATA>")  # fmt: skip
        self.assertEqual(
            self.h.call("one.vmpool.monitoring", -5)[:3],
            [False, "[one.vmpool.monitoring] Incorrect filter_flag", 0x1000],
        )
