"""A security group's VM id collections render as ``ids_xml`` does whatever happened to
them (the cached rendering is reused or extended only when that is the same text)."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from oned.objects.base import ids_xml
from oned.objects.secgroup import SecurityGroup


def expected(group: SecurityGroup) -> str:
    return (
        ids_xml("UPDATED_VMS", group.updated)
        + ids_xml("OUTDATED_VMS", group.outdated)
        + ids_xml("UPDATING_VMS", group.updating)
        + ids_xml("ERROR_VMS", group.error)
    )


class SecgroupIdsTests(SynchronousTestCase):
    def test_random_changes_render_like_ids_xml(self) -> None:
        rng = random.Random(7)
        group = SecurityGroup(0, "default")
        for step in range(1500):
            lists = [group.updated, group.outdated, group.updating, group.error]
            roll = rng.random()
            if roll < 0.6:
                group.add_vm(step)
            elif roll < 0.7:
                rng.choice(lists).add(rng.randrange(step + 1))
            elif roll < 0.85:
                ids = rng.choice(lists)
                if ids:
                    ids.discard(rng.choice(sorted(ids)))
            elif roll < 0.9:
                group.commit(rng.random() < 0.5)
            elif roll < 0.95:
                group = group.copy()
            self.assertIn(expected(group), group.to_xml(), step)

    def test_copy_changed_alone_keeps_the_original_text(self) -> None:
        group = SecurityGroup(0, "default", updated=set(range(100)))
        before = group.to_xml()
        other = group.copy()
        other.add_vm(100)
        self.assertIn("<ID>100</ID>", other.to_xml())
        self.assertEqual(group.to_xml(), before)
        self.assertEqual(SecurityGroup.from_xml(other.to_xml()).updated, set(range(101)))
