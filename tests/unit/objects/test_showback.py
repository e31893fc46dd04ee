"""The showback arithmetic of ``oned.objects.showback`` (oned's ``calculate_showback``)."""

from __future__ import annotations

import calendar
import os
import time

from twisted.trial.unittest import SynchronousTestCase

from oned.objects.showback import (
    HistoryCost,
    calculate,
    f32,
    float_to_str,
    history_cost,
    slots,
    window,
)

HOUR = 3600


def at(year: int, month: int, day: int = 1, hour: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, 0, 0))


class ShowbackArithmeticTests(SynchronousTestCase):
    def setUp(self) -> None:
        old = os.environ.get("TZ")
        os.environ["TZ"] = "UTC"
        time.tzset()

        def restore() -> None:
            if old is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old
            time.tzset()

        self.addCleanup(restore)

    def test_float_to_str(self) -> None:
        """Whole numbers without decimals, anything else with two (C ``fixed``)."""
        self.assertEqual(float_to_str(0.0), "0")
        self.assertEqual(float_to_str(12.0), "12")
        self.assertEqual(float_to_str(0.0002), "0.00")
        self.assertEqual(float_to_str(f32(0.125)), "0.12")
        self.assertEqual(float_to_str(2.5), "2.50")

    def test_single_precision_sums(self) -> None:
        """Ten 0.1 added as C floats are not 1: oned prints 1.00, not 1."""
        total = 0.0
        for _ in range(10):
            total = f32(total + f32(0.1))
        self.assertNotEqual(total, 1.0)
        self.assertEqual(float_to_str(total), "1.00")

    def test_window_and_slots(self) -> None:
        """Months from the start month to the end month (capped at now), over a year end."""
        now = at(2024, 2, 10)
        start, end = window(11, 2023, 1, 2024, now, 0)
        self.assertEqual((start, end), (at(2023, 11), at(2024, 2)))
        self.assertEqual(slots(start, end), [at(2023, 11), at(2023, 12), at(2024, 1), at(2024, 2)])
        start, end = window(-1, -1, -1, -1, now, at(2024, 1, 20))
        self.assertEqual(slots(start, end), [at(2024, 1), at(2024, 2), now])
        self.assertEqual(window(13, 2023, 12, 2030, now, 0), (at(2024, 1), now))

    def cost(self, **kw: int | float | str) -> HistoryCost:
        base: dict[str, int | float | str] = dict(
            vid=3, stime=0, etime=0, rstime=0, retime=0, cpu=1.0, memory=1024, disk=2048.0,
            cpu_cost=1.0, memory_cost=0.0, disk_cost=0.0, vmname="x", uid=0, gid=0,
            uname="oneadmin", gname="oneadmin",
        )  # fmt: skip
        base.update(kw)
        return HistoryCost(**base)  # type: ignore[arg-type]

    def test_record_cut_into_months(self) -> None:
        """A record spanning a month change counts its hours in each month; an open
        record runs to the end of the window; ONLY_RUNNING moves CPU/MEMORY to RHOURS."""
        bounds = [at(2024, 1), at(2024, 2), at(2024, 2, 1, 5)]
        h = self.cost(stime=at(2024, 1, 31, 22), rstime=at(2024, 1, 31, 23), disk_cost=0.5)
        rows = calculate([h], bounds, only_running=False)
        self.assertEqual([(r.vmid, r.year, r.month) for r in rows], [(3, 2024, 1), (3, 2024, 2)])
        self.assertIn("<CPU_COST>2</CPU_COST>", rows[0].body)
        self.assertIn("<DISK_COST>2048</DISK_COST>", rows[0].body)
        self.assertIn("<HOURS>2</HOURS><RHOURS>1</RHOURS>", rows[0].body)
        self.assertIn("<CPU_COST>5</CPU_COST>", rows[1].body)
        self.assertIn("<TOTAL_COST>5125</TOTAL_COST><HOURS>5</HOURS>", rows[1].body)
        running = calculate([h], bounds, only_running=True)
        self.assertIn("<CPU_COST>1</CPU_COST>", running[0].body)
        self.assertIn("<HOURS>2</HOURS><RHOURS>1</RHOURS>", running[0].body)

    def test_names_from_the_last_record_and_records_outside(self) -> None:
        bounds = [at(2024, 1), at(2024, 2)]
        first = self.cost(stime=at(2024, 1, 2), etime=at(2024, 1, 2, 1), vmname="old")
        last = self.cost(stime=at(2024, 1, 3), etime=at(2024, 1, 3, 2), vmname="a<b")
        outside = self.cost(vid=4, stime=at(2023, 5, 1), etime=at(2023, 5, 2))
        rows = calculate([first, last, outside], bounds, only_running=False)
        self.assertEqual(len(rows), 1)
        self.assertIn("<VMNAME>a&lt;b</VMNAME>", rows[0].body)
        self.assertIn("<HOURS>3</HOURS>", rows[0].body)

    def test_history_body(self) -> None:
        """Costs from the VM template in the record, DEFAULT_COST for missing ones,
        DISK SIZE plus DISK_SNAPSHOT_TOTAL_SIZE."""
        body = (
            "<HISTORY><OID>7</OID><SEQ>0</SEQ><STIME>10</STIME><ETIME>20</ETIME>"
            "<RSTIME>11</RSTIME><RETIME>19</RETIME><VM><ID>7</ID><UID>2</UID><GID>1</GID>"
            "<UNAME>u</UNAME><GNAME>users</GNAME><NAME>vm7</NAME><TEMPLATE>"
            "<CPU><![CDATA[0.5]]></CPU><MEMORY><![CDATA[512]]></MEMORY>"
            "<MEMORY_COST><![CDATA[0.25]]></MEMORY_COST>"
            "<DISK><SIZE><![CDATA[100]]></SIZE><DISK_SNAPSHOT_TOTAL_SIZE><![CDATA[5]]>"
            "</DISK_SNAPSHOT_TOTAL_SIZE></DISK><DISK><SIZE><![CDATA[20]]></SIZE></DISK>"
            "</TEMPLATE></VM></HISTORY>"
        )
        h = history_cost(body, (3.0, 9.0, 0.5))
        assert h is not None
        self.assertEqual((h.vid, h.stime, h.etime, h.rstime, h.retime), (7, 10, 20, 11, 19))
        self.assertEqual((h.cpu, h.memory, h.disk), (0.5, 512, 125.0))
        self.assertEqual((h.cpu_cost, h.memory_cost, h.disk_cost), (3.0, 0.25, 0.5))
        self.assertEqual((h.vmname, h.uid, h.gid, h.uname, h.gname), ("vm7", 2, 1, "u", "users"))
        self.assertIsNone(history_cost("<HISTORY", (0, 0, 0)))

    def test_slot_search_matches_every_slot(self) -> None:
        """Records are added to the slots they overlap found by bisection: the same
        totals as trying every slot (oned's loop), over random records."""
        import random

        from oned.objects import showback

        rng = random.Random(7)
        bounds = slots(at(2023, 1), at(2024, 6))
        records = []
        for vid in range(40):
            st = rng.choice([0, rng.randrange(at(2022, 6), at(2024, 8))])
            et = rng.choice([0, st + rng.randrange(0, 90 * 24 * HOUR)])
            rs = rng.choice([0, st + rng.randrange(0, 5 * HOUR)])
            re_ = rng.choice([0, et, rs + HOUR])
            records.append(self.cost(vid=vid, stime=st, etime=et, rstime=rs, retime=re_))
        got = calculate(records, bounds, only_running=False)

        def every_slot(h: HistoryCost, st: int, et: int, *flags: bool) -> None:
            for t, t_next in zip(bounds, bounds[1:], strict=False):
                showback._add(totals[h.vid], h, t, t_next, st, et, *flags)  # noqa: SLF001

        totals: dict[int, dict[int, showback.Totals]] = {}
        for h in records:
            totals.setdefault(h.vid, {})
            every_slot(h, h.stime, h.etime, True, True, False)
            every_slot(h, h.rstime, h.retime, False, False, True)
        expected = [
            (vid, t, months[t].to_xml())
            for vid, months in sorted(totals.items())
            for t in sorted(months)
        ]
        self.assertEqual(len(got), len(expected))
        for row, (vid, t, xml) in zip(got, expected, strict=True):
            self.assertEqual((row.vmid, row.month), (vid, time.localtime(t).tm_mon))
            self.assertIn(xml, row.body)

    def test_dates_mktime_cannot_represent(self) -> None:
        """Years far out of range give no month (and no error)."""
        now = at(2024, 2, 10)
        for year in (2**31 - 1, -(2**31)):
            start, end = window(1, year, 1, year, now, 0)
            bounds = slots(start, end)
            self.assertEqual(bounds[-1], end)
            self.assertLessEqual(len(bounds), 2)
