"""one.vmpool.info/infoextended written slice by slice: filters, id ranges, pages, order,
state filters and the pieces of the answer (a tiny slice size, driven on the fake clock)."""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.api import vmpool
from oned.pools import vm as pools_vm
from oned.testing.rpc import OnedHarness

HOLD = 'NAME="v{i}"\nCPU="0.1"\nMEMORY="64"'


class ListingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        self.patch(vmpool, "SLICE", 2)
        self.patch(pools_vm, "BLOCK", 3)
        uid = self.h.ok("one.user.allocate", "alice", "pw", "core", [])
        self.h.ok("one.user.chgrp", uid, 1)
        self.alice = "alice:pw"
        self.alice_uid = uid
        self.admin_vms = [self.h.ok("one.vm.allocate", HOLD.format(i=i), True) for i in range(5)]
        self.alice_vms = [
            self.h.ok("one.vm.allocate", HOLD.format(i=i), True, session=self.alice)
            for i in range(5, 8)
        ]
        self.h.ok("one.vm.action", "terminate", self.admin_vms[1])

    def parts(self, method: str, *params: Any, session: str | None = None) -> list[bytes]:
        """The answer's pieces, letting the fake clock run the turns between slices."""
        body = xmlrpc.client.dumps((session or self.h.admin, *params), method).encode()
        d = Deferred.fromCoroutine(self.h.manager.handle_body_parts(body, "127.0.0.1:1"))
        box: list[Any] = []
        d.addBoth(box.append)
        for _ in range(100):
            if box:
                break
            self.h.clock.advance(0)
        self.assertTrue(box, "the listing never finished")
        return list(box[0])

    def listing(self, method: str, *params: Any, session: str | None = None) -> str:
        reply = xmlrpc.client.loads(b"".join(self.parts(method, *params, session=session)))
        answer = reply[0][0]
        self.assertTrue(answer[0], answer)
        return str(answer[1])

    def ids(self, *params: Any, session: str | None = None, extended: bool = False) -> list[int]:
        method = "one.vmpool.infoextended" if extended else "one.vmpool.info"
        doc = self.listing(method, *params, session=session)
        return [int(v) for v in re.findall(r"<VM><ID>(\d+)</ID>", doc)]

    def test_whole_pool_in_slices(self) -> None:
        """Every VM but DONE ones, newest first, as the cached bodies; one piece per
        slice."""
        alive = sorted(set(self.admin_vms + self.alice_vms) - {self.admin_vms[1]}, reverse=True)
        self.assertEqual(self.ids(-2, -1, -1, -1), alive)
        doc = self.listing("one.vmpool.info", -2, -1, -1, -1)
        expected = "".join(self.h.core.vms.short_body(v) for v in alive)
        self.assertEqual(doc, f"<VM_POOL>{expected}</VM_POOL>")
        doc = self.listing("one.vmpool.infoextended", -2, -1, -1, -1)
        self.assertEqual(
            doc, "<VM_POOL>" + "".join(map(self.h.core.vms.body, alive)) + "</VM_POOL>"
        )
        pieces = self.parts("one.vmpool.infoextended", -2, -1, -1, -1)
        self.assertGreaterEqual(len(pieces), 3 + 2)  # ids 0-7 in blocks of 3
        pieces = self.parts("one.vmpool.infoextended", -3, -1, -1, -1)
        self.assertGreaterEqual(len(pieces), 2 + 2)  # slices of 2
        self.assertEqual(
            self.ids(-2, -1, -1, -2), sorted(alive + [self.admin_vms[1]], reverse=True)
        )

    def test_ranges_pages_and_states(self) -> None:
        a = self.admin_vms
        self.assertEqual(self.ids(-2, a[2], a[4], -1), [a[4], a[3], a[2]])
        self.assertEqual(self.ids(-2, a[0], a[2], -1), [a[2], a[0]])
        self.assertEqual(self.ids(-2, a[3], -1, -1, extended=True), [
            *reversed(self.alice_vms), a[4], a[3]])  # fmt: skip
        self.assertEqual(self.ids(-2, 0, -3, -1), sorted(self.alice_vms, reverse=True))
        self.assertEqual(self.ids(-2, 3, -2, -2), [a[4], a[3]])
        self.assertEqual(self.ids(-2, -1, -1, 6), [a[1]])
        self.assertEqual(self.ids(-2, -1, -1, 2), self.ids(-2, -1, -1, -1))
        self.assertEqual(
            self.h.call("one.vmpool.info", -2, -1, -1, 99)[:3],
            [False, "[one.vmpool.info] Incorrect state filter 99", 0x1000],
        )
        self.assertEqual(
            self.h.call("one.vmpool.info", -7, -1, -1, -1)[:3],
            [False, "[one.vmpool.info] Incorrect filter_flag", 0x1000],
        )

    def test_owner_filters_and_order(self) -> None:
        mine = sorted(self.alice_vms, reverse=True)
        self.assertEqual(self.ids(-3, -1, -1, -1, session=self.alice), mine)
        self.assertEqual(self.ids(-2, -1, -1, -1, session=self.alice), mine)
        self.assertEqual(self.ids(-1, -1, -1, -1, session=self.alice), mine)
        self.assertEqual(self.ids(self.alice_uid, -1, -1, -1), mine)
        self.assertEqual(self.ids(-4, -1, -1, -1), [4, 3, 2, 0])
        self.assertEqual(self.ids(-3, -1, -1, -2), [4, 3, 2, 1, 0])
        self.h.ok("one.user.update", 0, "OPENNEBULA=[API_LIST_ORDER=ASC]", 1)
        self.assertEqual(self.ids(-3, -1, -1, -1), [0, 2, 3, 4])
        self.assertEqual(self.ids(-2, 2, 5, -1), [2, 3, 4, 5])

    def test_cached_blocks_follow_changes(self) -> None:
        """Whole-pool pieces are cached per block of ids and dropped when one of their
        VMs changes (rename, state, a new VM, ASC and DESC kept apart)."""
        a = self.admin_vms
        before = self.listing("one.vmpool.info", -2, -1, -1, -1)
        self.assertEqual(self.listing("one.vmpool.info", -2, -1, -1, -1), before)
        self.h.ok("one.vm.rename", a[3], "renamed")
        after = self.listing("one.vmpool.info", -2, -1, -1, -1)
        self.assertIn("<NAME>renamed</NAME>", after)
        self.assertEqual(after, before.replace("<NAME>v3</NAME>", "<NAME>renamed</NAME>"))
        self.h.ok("one.vm.action", "terminate", a[4])
        self.assertNotIn(a[4], self.ids(-2, -1, -1, -1))
        self.assertIn(a[4], self.ids(-2, -1, -1, -2))
        new = self.h.ok("one.vm.allocate", HOLD.format(i=99), True)
        self.assertEqual(self.ids(-2, -1, -1, -1)[0], new)
        self.h.ok("one.user.update", 0, "OPENNEBULA=[API_LIST_ORDER=ASC]", 1)
        self.assertEqual(self.ids(-2, -1, -1, -1)[-1], new)
        self.assertEqual(self.ids(-2, -1, -1, -1, extended=True)[:2], [a[0], a[2]])


class PiecesProducerTests(SynchronousTestCase):
    """Large answers go to the transport one piece per resumeProducing."""

    def test_pieces_in_order_then_finish(self) -> None:
        from oned.api.server import _Pieces

        calls: list[Any] = []

        class Request:
            def write(self, data: bytes) -> None:
                calls.append(data)

            def unregisterProducer(self) -> None:
                calls.append("unregister")

            def finish(self) -> None:
                calls.append("finish")

        producer = _Pieces(Request(), [b"a", b"b", b"c"])  # type: ignore[arg-type]
        for _ in range(6):
            producer.resumeProducing()
        self.assertEqual(calls, [b"a", b"b", b"c", "unregister", "finish"])
        calls.clear()
        stopped = _Pieces(Request(), [b"a", b"b"])  # type: ignore[arg-type]
        stopped.resumeProducing()
        stopped.stopProducing()
        stopped.resumeProducing()
        self.assertEqual(calls, [b"a"])
