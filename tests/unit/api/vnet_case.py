"""A harness with an IPAMManager behind a scripted IPAM driver (network tests)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.managers.ipam.manager import IPAMManager
from oned.managers.ipam.testing import FakeIPAMDrivers
from oned.testing.rpc import OnedHarness, result_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
import xsd  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"

NET_IP4 = (
    'NAME="sample-net-ip4"\nVN_MAD="dummy"\nBRIDGE="br0"\n'
    'AR=[TYPE="IP4", IP="10.0.0.10", SIZE="50"]\nDNS="10.0.0.1"\nGATEWAY="10.0.0.1"\n'
    'NETWORK_ADDRESS="10.0.0.0"\nNETWORK_MASK="255.255.255.0"\nSECURITY_GROUPS="100"\n'
)
NET_MULTI = (
    'NAME="sample-net-multi"\nVN_MAD="dummy"\nBRIDGE="br1"\n'
    'AR=[TYPE="IP6", GLOBAL_PREFIX="2001:db8:1::", ULA_PREFIX="fd00:1::", SIZE="16", '
    'MAC="02:00:7c:d9:51:2b"]\nAR=[TYPE="ETHER", SIZE="8", MAC="02:00:2e:24:52:f9"]\n'
    'AR=[TYPE="IP4_6", IP="192.168.50.10", GLOBAL_PREFIX="2001:db8:50::", '
    'ULA_PREFIX="fd00:50::", SIZE="20"]\n'
)


def sample(name: str) -> str:
    return (SAMPLES / name).read_text().strip()


class VNetCase(SynchronousTestCase):
    """oneadmin on an in-memory daemon whose IPAM driver answers when told."""

    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.drivers = FakeIPAMDrivers()
        self.manager = IPAMManager(self.one.core, self.drivers, self.one.clock)
        self.one.core.ipam_manager = self.manager
        result_of(Deferred.fromCoroutine(self.manager.start()))

    def settle(self) -> None:
        """Answer every pending VNET_CREATE/VNET_DELETE as the dummy driver does."""
        while self.drivers.answer_all():
            self.one.clock.advance(0)
        self.one.clock.advance(0)

    def net(self, text: str, cluster: int = -1, ready: bool = True) -> int:
        oid = self.one.ok("one.vn.allocate", text, cluster)
        if ready:
            self.settle()
        return int(oid)

    def refused(self, method: str, *params: Any, session: str | None = None) -> tuple[str, int]:
        reply = self.one.call(method, *params, session=session)
        assert not reply[0], reply
        return str(reply[1]), int(reply[2])

    def valid(self, doc: str) -> None:
        if xsd.available():
            self.assertEqual(xsd.errors(doc), [])

    def info(self, oid: int) -> str:
        doc = str(self.one.ok("one.vn.info", oid))
        self.valid(doc)
        return doc

    def raw_info(self, oid: int) -> str:
        """vn.info without XSD validation: oned itself emits ARs outside the closed AR
        sequence (IP6, PREFIX_LENGTH, IPAM_MAD, free-form attributes)."""
        return str(self.one.ok("one.vn.info", oid))

    def user(self, name: str = "alice") -> str:
        self.one.ok("one.user.allocate", name, "pw", "core", [])
        return f"{name}:pw"
