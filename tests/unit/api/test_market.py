"""one.market.* / one.marketapp.* and the MarketPlaceManager through the real request
manager, with scripted datastore and market drivers (in-memory database, fake clock)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage, b64decode, b64encode
from oned.managers.image.manager import ImageManager
from oned.managers.image.testing import FakeDatastoreDrivers
from oned.managers.market.manager import MarketPlaceManager
from oned.objects import image as im
from oned.objects import marketapp as ma
from oned.testing.rpc import OnedHarness, result_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
import xsd  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"

T25 = (
    'NAME="sample-market"\nMARKET_MAD="http"\nBASE_URL="http://frontend.example.org/appliances"\n'
    'PUBLIC_DIR="/var/lib/one/market-public"\nDESCRIPTION="private HTTP marketplace"\n'
)
T26 = (
    'NAME="sample-app"\nORIGIN_ID="1"\nTYPE="IMAGE"\nVERSION="1.0"\n'
    'DESCRIPTION="exported from sample-os"\n'
)
T27 = (
    'NAME="sample-template-app"\nTYPE="VMTEMPLATE"\nORIGIN_ID="-1"\nVERSION="2.0"\n'
    'DESCRIPTION="a VM template appliance"\nAPPTEMPLATE64="Q1BVPSIxIgpNRU1PUlk9IjEyOCIKRElTSz1b'
    'SU1BR0U9InNhbXBsZS1hcHAiXQpERVNDUklQVElPTj0iYXBwbGlhbmNlIHRlbXBsYXRlIg=="\n'
)
IMPORT_OK = b64encode('SOURCE="dummy://apps/0"\nMD5="abc"\nFORMAT="raw"\nSIZE="1024"\n')


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8").strip()


def regtime(doc: str) -> str:
    return re.sub(r"<REGTIME>\d+</REGTIME>", "<REGTIME>T</REGTIME>", doc)


@dataclass
class Sent:
    action: str
    oid: int
    payload: str

    @property
    def document(self) -> etree._Element:
        return etree.fromstring(b64decode(self.payload).encode())


@dataclass
class FakeMarketDrivers:
    """Records MARKET_MAD actions; the test delivers the replies."""

    sent: list[Sent] = field(default_factory=list)
    handlers: dict[str, Any] = field(default_factory=dict)
    up: bool = True

    def register_action(self, family: Family, action: str, handler: Any) -> None:
        assert family is Family.MARKET
        self.handlers[action] = handler

    def send(self, family: Family, action: str, oid: int, payload: str = "") -> bool:
        if self.up:
            self.sent.append(Sent(action, oid, payload))
        return self.up

    def pending(self, action: str) -> list[Sent]:
        return [s for s in self.sent if s.action == action]

    def reply(self, action: str, oid: int, status: str = "SUCCESS", info: str = "-") -> None:
        self.sent = [s for s in self.sent if (s.action, s.oid) != (action, oid)]
        self.handlers[action](DriverMessage(action, status, oid, info))


class MarketCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        core = self.one.core
        self.one.ok("one.datastore.update", 1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
        self.ds = FakeDatastoreDrivers()
        core.image_manager = ImageManager(core, self.ds, self.one.clock)
        result_of(Deferred.fromCoroutine(core.image_manager.start()))
        self.drivers = FakeMarketDrivers()
        self.mgr = MarketPlaceManager(core, self.drivers, self.one.clock)
        core.market_manager = self.mgr
        result_of(Deferred.fromCoroutine(self.mgr.start()))
        self.settle()

    def tearDown(self) -> None:
        result_of(Deferred.fromCoroutine(self.mgr.stop()))
        result_of(Deferred.fromCoroutine(self.one.core.image_manager.stop()))  # type: ignore[union-attr]

    def settle(self) -> None:
        self.one.clock.advance(0)
        self.ds.answer_all()
        self.one.clock.advance(0)
        self.one.clock.advance(0)

    def image(self, name: str) -> int:
        oid = self.one.ok("one.image.allocate", f'NAME="{name}"\nPATH="/tmp/{name}"\nTYPE=OS', 1)
        self.settle()
        return int(oid)

    def fail(self, method: str, *params: object, session: str | None = None) -> list[Any]:
        reply = self.one.call(method, *params, session=session)
        self.assertFalse(reply[0], reply)
        return list(reply[1:3])

    def app(self, oid: int) -> etree._Element:
        return etree.fromstring(self.one.ok("one.marketapp.info", oid))

    def state(self, oid: int) -> int:
        return int(self.app(oid).findtext("STATE") or -1)

    def image_doc(self, oid: int) -> etree._Element:
        return etree.fromstring(self.one.ok("one.image.info", oid))

    def valid(self, doc: str) -> None:
        if xsd.available():
            self.assertEqual(xsd.errors(doc), [])

    def exported(self) -> int:
        """Market 100 (http), images 0 and 1, app 0 exporting image 1."""
        self.assertEqual(self.one.ok("one.market.allocate", T25), 100)
        self.image("sample-db")
        self.image("sample-os")
        self.drivers.sent.clear()
        return int(self.one.ok("one.marketapp.allocate", T26, 100))


class BootstrapAndMarkets(MarketCase):
    def test_default_marketplaces_as_oned(self) -> None:
        self.assertEqual(
            self.one.ok("one.market.info", 0), sample("one.market.info.opennebula-public-0.xml")
        )
        self.assertEqual(
            self.one.ok("one.market.info", 1), sample("one.market.info.linux-containers-1.xml")
        )
        pool = self.one.ok("one.marketpool.info")
        self.assertEqual(pool, sample("one.marketpool.info.xml"))
        self.valid(pool)
        empty = self.one.ok("one.marketapppool.info", -2, -1, -1)
        self.assertEqual(empty, sample("one.marketapppool.info.xml"))

    def test_allocate_private_market(self) -> None:
        self.assertEqual(self.one.ok("one.market.allocate", T25), 100)
        doc = self.one.ok("one.market.info", 100)
        self.assertEqual(doc, sample("one.market.info.private-http.xml"))
        self.valid(doc)

    def test_allocate_errors(self) -> None:
        self.assertEqual(
            self.fail("one.market.allocate", "NAME=x\nMARKET_MAD=http")[0],
            "[one.market.allocate] Error allocating a new marketplace. MarketPlace template "
            'is missing the "BASE_URL" attribute or it\'s empty.',
        )
        self.assertIn(
            'MARKET_MAD_CONF named "nope" is not defined in oned.conf',
            self.fail("one.market.allocate", "NAME=x\nMARKET_MAD=nope")[0],
        )
        self.assertIn(
            "No marketplace driver (MARKET_MAD) in template.",
            self.fail("one.market.allocate", "NAME=x")[0],
        )
        self.assertIn(
            "NAME is already taken by MARKETPLACE 0",
            self.fail("one.market.allocate", 'NAME="OpenNebula Public"\nMARKET_MAD=dummy')[0],
        )
        self.assertEqual(self.fail("one.market.info", 9999), sample_error("one.market.info"))
        self.assertEqual(self.fail("one.marketapp.info", 9999), sample_error("one.marketapp.info"))

    def test_update_checks_driver_and_rename_reaches_apps(self) -> None:
        self.exported()
        self.assertEqual(
            self.fail("one.market.update", 100, "MARKET_MAD=s3", 1),
            [
                "[one.market.update] Cannot update template. MarketPlace template is missing "
                'the "ACCESS_KEY_ID" attribute or it\'s empty.',
                8192,
            ],
        )
        self.one.ok("one.market.update", 100, 'EXTRA="1"', 1)
        market = etree.fromstring(self.one.ok("one.market.info", 100))
        self.assertEqual(market.findtext("TEMPLATE/MARKET_MAD"), "http")
        self.one.ok("one.market.rename", 100, "renamed")
        self.assertEqual(self.app(0).findtext("MARKETPLACE"), "renamed")

    def test_delete_private_market_only_when_empty(self) -> None:
        self.exported()
        self.assertEqual(
            self.fail("one.market.delete", 100),
            ["[one.market.delete] Cannot delete marketplace. marketplace  100 is not empty.", 2048],
        )
        self.one.ok("one.market.allocate", 'NAME="empty"\nMARKET_MAD=dummy')
        self.one.ok("one.market.delete", 101)
        self.fail("one.market.info", 101)

    def test_disable_drops_apps_enable_monitors(self) -> None:
        self.exported()
        self.one.ok("one.marketapp.allocate", T27, 100)
        self.one.ok("one.market.enable", 100, False)
        market = etree.fromstring(self.one.ok("one.market.info", 100))
        self.assertEqual(market.findtext("STATE"), "1")
        self.assertEqual(market.findall("MARKETPLACEAPPS/ID"), [])
        self.assertEqual(
            self.one.ok("one.marketapppool.info", -2, -1, -1), sample("one.marketapppool.info.xml")
        )
        self.drivers.sent.clear()
        self.one.ok("one.market.enable", 100, True)
        self.assertEqual([(s.action, s.oid) for s in self.drivers.sent], [("MONITOR", 100)])

    def test_internal_db_methods(self) -> None:
        body = self.one.ok("one.market.info", 0)
        # allocatedb reads the document from index 2; index 1 is ignored
        new = self.one.ok(
            "one.market.allocatedb", "ignored", body.replace("OpenNebula Public", "copy")
        )
        self.assertEqual(new, 100)
        self.assertEqual(
            etree.fromstring(self.one.ok("one.market.info", 100)).findtext("NAME"), "copy"
        )
        changed = body.replace("<TOTAL_MB>0</TOTAL_MB>", "<TOTAL_MB>7</TOTAL_MB>")
        self.one.ok("one.market.updatedb", 0, changed)
        self.assertEqual(self.one.ok("one.market.info", 0), changed)
        self.assertIn("Consistency check failed", self.fail("one.market.updatedb", 1, changed)[0])
        self.one.ok("one.user.allocate", "alice", "pw", "")
        denied = self.fail("one.market.updatedb", 0, changed, session="alice:pw")
        self.assertEqual(denied[1], 512)
        app = self.one.ok("one.marketapp.allocatedb", "", sample("one.marketapp.info.locked.xml"))
        self.assertEqual(app, 0)
        self.one.ok("one.marketapp.dropdb", 0)
        self.fail("one.marketapp.info", 0)


def sample_error(method: str) -> list[Any]:
    import json

    reply = json.loads(sample(f"{method}.missing.json"))
    return [reply[1], reply[2]]


class Apps(MarketCase):
    def test_export_image_locked_then_ready(self) -> None:
        self.assertEqual(self.exported(), 0)
        doc = self.one.ok("one.marketapp.info", 0)
        self.assertEqual(regtime(doc), regtime(sample("one.marketapp.info.locked.xml")))
        self.valid(doc)
        img = self.image_doc(1)
        self.assertEqual(img.findtext("STATE"), str(im.USED))
        self.assertEqual([e.text for e in img.findall("APP_CLONES/ID")], ["0"])
        self.assertEqual(img.findtext("CLONING_OPS"), "1")
        (sent,) = self.drivers.pending("IMPORT")
        root = sent.document
        self.assertEqual(root.tag, "MARKET_DRIVER_ACTION_DATA")
        self.assertEqual(
            [c.tag for c in root], ["MARKETPLACEAPP", "MARKETPLACE", "IMAGE", "DATASTORE"]
        )
        self.assertEqual(
            self.fail("one.image.delete", 1),
            ["[one.image.delete] Cannot delete image. There are 0 VMs using it.", 2048],
        )
        self.drivers.reply("IMPORT", 0, info=IMPORT_OK)
        self.settle()
        app = self.app(0)
        self.assertEqual(int(app.findtext("STATE") or -1), ma.READY)
        self.assertEqual(
            [app.findtext(n) for n in ("SOURCE", "MD5", "FORMAT", "SIZE")],
            ["dummy://apps/0", "abc", "raw", "1024"],
        )
        img = self.image_doc(1)
        self.assertEqual(img.findtext("STATE"), str(im.READY))
        self.assertEqual(img.findall("APP_CLONES/ID"), [])

    def test_template_app_ready_and_pool_as_oned(self) -> None:
        self.exported()
        self.assertEqual(self.one.ok("one.marketapp.allocate", T27, 100), 1)
        doc = self.one.ok("one.marketapp.info", 1)
        self.assertEqual(regtime(doc), regtime(sample("one.marketapp.info.vm-template-ready.xml")))
        pool = self.one.ok("one.marketapppool.info", -2, -1, -1)
        self.assertEqual(regtime(pool), regtime(sample("one.marketapppool.info.with-apps.xml")))
        self.valid(pool)
        market = self.one.ok("one.market.info", 100)
        self.assertEqual(market, sample("one.market.info.private-with-apps.xml"))

    def test_failed_or_garbage_import_is_error(self) -> None:
        self.exported()
        self.drivers.reply("IMPORT", 0, "FAILURE", "no space left")
        self.settle()
        app = self.app(0)
        self.assertEqual(int(app.findtext("STATE") or -1), ma.ERROR)
        self.assertTrue(
            (app.findtext("TEMPLATE/ERROR") or "").endswith(
                " : Error importing app into marketplace: no space left"
            )
        )
        self.assertEqual(self.image_doc(1).findtext("STATE"), str(im.READY))
        self.one.ok("one.marketapp.allocate", T26.replace("sample-app", "again"), 100)
        self.drivers.reply("IMPORT", 1, info=b64encode('SOURCE="x"\nSIZE="big"'))
        self.settle()
        self.assertIn("Missing app attributes.", self.app(1).findtext("TEMPLATE/ERROR") or "")
        self.one.ok("one.marketapp.allocate", T26.replace("sample-app", "third"), 100)
        self.drivers.reply("IMPORT", 2, info=b64encode("=x"))
        self.settle()
        self.assertIn("Parse error", self.app(2).findtext("TEMPLATE/ERROR") or "")
        self.assertEqual(self.image_doc(1).findtext("STATE"), str(im.READY))

    def test_export_of_image_not_ready_or_missing(self) -> None:
        self.one.ok("one.market.allocate", T25)
        self.image("sample-db")
        self.image("sample-os")
        self.one.ok("one.image.enable", 1, False)
        self.assertEqual(
            self.fail("one.marketapp.allocate", T26, 100),
            ["[one.marketapp.allocate] Cannot clone image in current state", 8192],
        )
        self.assertEqual(self.state(0), ma.ERROR)
        missing = T26.replace("sample-app", "ghost").replace('ORIGIN_ID="1"', 'ORIGIN_ID="77"')
        self.assertEqual(
            self.fail("one.marketapp.allocate", missing, 100)[0],
            "[one.marketapp.allocate] Image does not exist.",
        )
        self.assertEqual(self.drivers.pending("IMPORT"), [])
        self.assertIn(
            "Missing ORIGIN_ID",
            self.fail("one.marketapp.allocate", 'NAME="no-origin"', 100)[0],
        )
        self.assertIn(
            "Missing ORIGIN_ID",
            self.fail("one.marketapp.allocate", 'NAME="bad"\nORIGIN_ID="abc"', 100)[0],
        )
        self.assertEqual(
            self.fail("one.marketapp.allocate", T27, 0)[0],
            "[one.marketapp.allocate] Create disabled for market: OpenNebula Public",
        )
        self.assertIn(
            "Cannot find associated MARKETPLACE ID = 5",
            self.fail("one.marketapp.allocate", T27, 5)[0],
        )
        self.drivers.up = False
        self.one.ok("one.image.enable", 1, True)
        self.one.ok("one.marketapp.allocate", T26.replace("sample-app", "down"), 100)
        self.settle()
        self.assertEqual(self.state(2), ma.ERROR)
        self.assertEqual(self.image_doc(1).findtext("STATE"), str(im.READY))

    def test_enable_disable(self) -> None:
        self.exported()
        self.one.ok("one.marketapp.enable", 0, False)  # LOCKED: unchanged
        self.assertEqual(self.state(0), ma.LOCKED)
        self.drivers.reply("IMPORT", 0, info=IMPORT_OK)
        self.settle()
        self.one.ok("one.marketapp.enable", 0, False)
        self.assertEqual(self.state(0), ma.DISABLED)
        self.one.ok("one.marketapp.enable", 0, True)
        self.assertEqual(self.state(0), ma.READY)

    def test_delete_goes_through_the_driver(self) -> None:
        self.exported()
        self.one.ok("one.marketapp.delete", 0)
        self.assertEqual(self.image_doc(1).findtext("STATE"), str(im.READY))
        market = etree.fromstring(self.one.ok("one.market.info", 100))
        self.assertEqual(market.findall("MARKETPLACEAPPS/ID"), [])
        (sent,) = self.drivers.pending("DELETE")
        self.assertEqual([c.tag for c in sent.document], ["MARKETPLACEAPP", "MARKETPLACE"])
        self.assertEqual(self.state(0), ma.LOCKED)  # dropped when the driver answers
        self.drivers.reply("DELETE", 0, "0", "")
        self.settle()
        self.fail("one.marketapp.info", 0)

    def test_update_keeps_fixed_attributes(self) -> None:
        self.exported()
        self.one.ok("one.marketapp.update", 0, 'DESCRIPTION="new"\nSOURCE="x"\nORIGIN_ID="9"', 1)
        app = self.app(0)
        self.assertEqual(app.findtext("DESCRIPTION"), "new")
        self.assertIsNone(app.find("TEMPLATE/SOURCE"))
        self.assertEqual(app.findtext("ORIGIN_ID"), "1")
        self.one.ok("one.marketapp.lock", 0, 1)
        self.assertIsNotNone(self.app(0).find("LOCK"))
        self.valid(self.one.ok("one.marketapp.info", 0))
        self.one.ok("one.marketapp.unlock", 0)

    def test_image_from_app(self) -> None:
        self.exported()
        self.drivers.reply("IMPORT", 0, info=IMPORT_OK)
        self.settle()
        self.ds.sent.clear()
        self.ds.answer_all = lambda action=None: 0  # type: ignore[method-assign]
        oid = self.one.ok("one.image.allocate", 'NAME="from-app"\nFROM_APP="0"', 1)
        img = self.image_doc(oid)
        self.assertEqual(img.findtext("PATH"), "dummy://apps/0")
        self.assertEqual(img.findtext("SIZE"), "1024")
        self.assertEqual(img.findtext("TEMPLATE/FROM_APP_NAME"), "sample-app")
        self.assertEqual(img.findtext("TEMPLATE/FROM_APP_MD5"), "abc")
        (cp,) = self.ds.pending("CP")
        self.assertIn("<MARKETPLACE><ID>100</ID>", cp.document)
        self.assertIn(
            "New images can only be allocated in a files or image datastore.",
            self.fail("one.image.allocate", 'NAME="x"\nFROM_APP="0"', 0)[0],
        )
        self.assertIn(
            "Cannot determine image SIZE.",
            self.fail("one.image.allocate", 'NAME="y"\nFROM_APP="42"', 1)[0],
        )


class Monitoring(MarketCase):
    def test_monitor_timer_and_public_apps(self) -> None:
        self.one.ok("one.market.allocate", 'NAME="dm"\nMARKET_MAD=dummy')
        self.one.clock.advance(15)
        sent = sorted(s.oid for s in self.drivers.pending("MONITOR"))
        self.assertEqual(sent, [0, 100])  # 1 is disabled
        apps = [
            b64encode(
                f'NAME="app{i}"\nSOURCE="s{i}"\nMD5="m"\nSIZE="{i}"\nFORMAT="qcow2"\nVERSION="1"'
            )
            for i in (1, 2)
        ]
        info = "USED_MB=1\nFREE_MB=2\nTOTAL_MB=3\n" + "".join(f'APP="{a}"\n' for a in apps)
        self.drivers.reply("MONITOR", 0, info=b64encode(info))
        self.settle()
        market = etree.fromstring(self.one.ok("one.market.info", 0))
        self.assertEqual(market.findtext("TOTAL_MB"), "3")
        self.assertEqual([e.text for e in market.findall("MARKETPLACEAPPS/ID")], ["0", "1"])
        app = self.app(1)
        self.assertEqual((app.findtext("NAME"), app.findtext("STATE")), ("app2", "1"))
        self.assertEqual(app.findtext("PERMISSIONS/GROUP_U"), "1")
        self.valid(self.one.ok("one.marketapp.info", 1))
        self.assertIn(
            "Changing the ownership for an App from the public Marketplace is not permitted",
            self.fail("one.marketapp.chown", 1, 1, -1)[0],
        )
        only_first = "USED_MB=1\n" + f'APP="{apps[0]}"\n'
        for _ in range(3):  # seen once: dropped at the 4th report without it (map_check)
            self.drivers.reply("MONITOR", 0, info=b64encode(only_first))
            self.settle()
        self.app(1)
        self.drivers.reply("MONITOR", 0, info=b64encode(only_first))
        self.settle()
        self.assertEqual(
            [
                e.text
                for e in etree.fromstring(self.one.ok("one.market.info", 0)).findall(
                    "MARKETPLACEAPPS/ID"
                )
            ],
            ["0"],
        )
        self.fail("one.marketapp.info", 1)
        self.drivers.reply("MONITOR", 100, "FAILURE", "boom")
        self.drivers.reply("MONITOR", 100, info="!!notb64")
        self.settle()
        self.one.ok("one.market.delete", 0)  # public: deleted with its apps
        self.fail("one.marketapp.info", 0)

    def test_restart_resends_imports_and_deletes(self) -> None:
        self.assertEqual(self.one.ok("one.market.allocate", T25), 100)
        self.image("a")
        self.image("b")
        self.one.ok("one.marketapp.allocate", T26, 100)
        self.one.ok("one.marketapp.allocate", T27, 100)
        self.one.ok("one.marketapp.delete", 1)
        fresh = FakeMarketDrivers()
        again = MarketPlaceManager(self.one.core, fresh, self.one.clock)
        result_of(Deferred.fromCoroutine(again.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(again.stop())))
        self.assertEqual(
            sorted((s.action, s.oid) for s in fresh.sent), [("DELETE", 1), ("IMPORT", 0)]
        )
        for sent in fresh.sent:
            self.assertEqual(sent.document.findtext("MARKETPLACEAPP/ID"), str(sent.oid))
