"""one.vntemplate.*: oned's documents, instantiate (name, extra template, clusters,
TEMPLATE_ID), clone, delete and refusals."""

from __future__ import annotations

import json
import re

from .vnet_case import VNetCase, sample

VNT = (
    'NAME="sample-vntemplate"\nVN_MAD="dummy"\nBRIDGE="br2"\nDESCRIPTION="network template"\n'
    'AR=[TYPE="IP4", IP="172.16.0.10", SIZE="10"]'
)


def _no_time(doc: str) -> str:
    return re.sub(r"<REGTIME>\d+</REGTIME>", "<REGTIME/>", doc)


class VNTemplateTests(VNetCase):
    def test_documents_are_oneds(self) -> None:
        """info and pool match oned's samples (but REGTIME) and validate."""
        self.assertEqual(self.one.ok("one.vntemplate.allocate", VNT), 0)
        doc = self.one.ok("one.vntemplate.info", 0)
        self.valid(doc)
        self.assertEqual(_no_time(doc), _no_time(sample("one.vntemplate.info.xml")))
        pool = self.one.ok("one.vntemplatepool.info", -2, -1, -1)
        self.valid(pool)
        self.assertEqual(_no_time(pool), _no_time(sample("one.vntemplatepool.info.xml")))
        self.assertEqual(
            self.one.call("one.vntemplate.info", 9999),
            json.loads(sample("one.vntemplate.info.missing.json")),
        )

    def test_instantiate_makes_the_sample_network(self) -> None:
        """instantiate: name, extra template merged, TEMPLATE_ID, default cluster 0."""
        self.one.ok("one.vntemplate.allocate", VNT)
        oid = self.one.ok(
            "one.vntemplate.instantiate",
            0,
            "sample-net-from-vntemplate",
            'DESCRIPTION="instantiated"',
        )
        self.settle()
        doc = self.info(oid)
        expected = re.search(r"<VNET><ID>3</ID>.*?</VNET>", sample("one.vnpool.info.all.xml"))
        assert expected is not None
        pool = self.one.ok("one.vnpool.info", -2, -1, -1)
        self.assertEqual(
            pool,
            "<VNET_POOL>"
            + expected.group(0).replace("<ID>3</ID>", "<ID>0</ID>", 1)
            + "</VNET_POOL>",
        )
        self.assertIn("<TEMPLATE_ID>0</TEMPLATE_ID>", doc)
        self.assertEqual(
            doc, sample("one.vn.info.from-vntemplate.xml").replace("<ID>3</ID>", "<ID>0</ID>", 1)
        )
        auto = self.one.ok("one.vntemplate.instantiate", 0, "", 'AR=[TYPE="ETHER", SIZE="2"]')
        self.settle()
        doc = self.raw_info(auto)
        self.assertIn(f"<NAME>sample-vntemplate-{auto}</NAME>", doc)
        self.assertIn("<AR_ID><![CDATA[1]]></AR_ID>", doc)

    def test_clone_update_delete_and_refusals(self) -> None:
        """clone copies, names are unique per owner, VN_MAD is mandatory, delete drops."""
        self.one.ok("one.vntemplate.allocate", VNT)
        self.assertEqual(self.one.ok("one.vntemplate.clone", 0, "copy"), 1)
        msg, _ = self.refused("one.vntemplate.allocate", VNT)
        self.assertEqual(msg, "[one.vntemplate.allocate] NAME is already taken by VN TEMPLATE 0.")
        msg, _ = self.refused("one.vntemplate.allocate", 'NAME="x"')
        self.assertEqual(
            msg, "[one.vntemplate.allocate] Error inserting Template in DB. VN_MAD is mandatory"
        )
        self.one.ok("one.vntemplate.update", 1, 'FOO="1"', 1)
        self.assertIn("<FOO><![CDATA[1]]></FOO>", self.one.ok("one.vntemplate.info", 1))
        self.one.ok("one.vntemplate.delete", 1)
        self.refused("one.vntemplate.info", 1)
        msg, _ = self.refused("one.vntemplate.instantiate", 0, "n", 'VN_MAD="nope"')
        self.assertEqual(
            msg,
            "[one.vntemplate.instantiate] Error allocating a new virtual network. "
            'VN_MAD named "nope" is not defined in oned.conf',
        )

    def test_instantiate_as_another_owner(self) -> None:
        """AS_UID/AS_GID in the extra template make another user and group the owner."""
        self.one.ok("one.vntemplate.allocate", VNT)
        self.user()
        oid = self.one.ok("one.vntemplate.instantiate", 0, "theirs", 'AS_UID="2"\nAS_GID="1"')
        self.settle()
        doc = self.info(oid)
        self.assertIn("<UID>2</UID><GID>1</GID><UNAME>alice</UNAME><GNAME>users</GNAME>", doc)
        self.assertNotIn("AS_UID", doc)
        msg, _ = self.refused("one.vntemplate.instantiate", 0, "x", 'AS_UID="77"')
        self.assertEqual(msg, "[one.vntemplate.instantiate] Error getting user [77].")
