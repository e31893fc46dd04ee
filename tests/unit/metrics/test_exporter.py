"""The opennebula-exporter families rendered from the pools: names, help texts, labels and
values as ``src/oneprometheus/opennebula-exporter`` computes them, parsed with
prometheus_client's own parser."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from oned.metrics.http import Scrape
from oned.metrics.instruments import DaemonMetrics
from oned.testing.rpc import OnedHarness

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "api"))
from vnet_case import NET_IP4, VNetCase  # noqa: E402

#: Every family of the exporter's collectors: (type, label names of its samples).
EXPORTER = {
    "opennebula_oned_state": ("gauge", ("one_server_fqdn",)),
    "opennebula_scheduler_state": ("gauge", ("one_server_fqdn",)),
    "opennebula_flow_state": ("gauge", ("one_server_fqdn",)),
    "opennebula_hem_state": ("gauge", ("one_server_fqdn",)),
    "opennebula_gate_state": ("gauge", ("one_server_fqdn",)),
    "opennebula_fireedge_state": ("gauge", ("one_server_fqdn",)),
    "opennebula_ha_is_leader": ("gauge", ("one_server_fqdn",)),
    "opennebula_ha_error_members": ("gauge", ("one_server_fqdn",)),
    "opennebula_ha_members": ("gauge", ("one_server_fqdn",)),
    "opennebula_host_total": ("gauge", ()),
    "opennebula_host_state": ("gauge", ("one_host_id",)),
    "opennebula_host_mem_total_bytes": ("gauge", ("one_host_id",)),
    "opennebula_host_mem_maximum_bytes": ("gauge", ("one_host_id",)),
    "opennebula_host_mem_usage_bytes": ("gauge", ("one_host_id",)),
    "opennebula_host_cpu_total_ratio": ("gauge", ("one_host_id",)),
    "opennebula_host_cpu_maximum_ratio": ("gauge", ("one_host_id",)),
    "opennebula_host_cpu_usage_ratio": ("gauge", ("one_host_id",)),
    "opennebula_host_vms": ("gauge", ("one_host_id",)),
    "opennebula_datastore_total": ("gauge", ()),
    "opennebula_datastore_total_bytes": (
        "gauge",
        ("one_datastore_id", "one_datastore_type", "one_datastore_name"),
    ),
    "opennebula_datastore_used_bytes": (
        "gauge",
        ("one_datastore_id", "one_datastore_type", "one_datastore_name"),
    ),
    "opennebula_datastore_free_bytes": (
        "gauge",
        ("one_datastore_id", "one_datastore_type", "one_datastore_name"),
    ),
    "opennebula_datastore_images": (
        "gauge",
        ("one_datastore_id", "one_datastore_type", "one_datastore_name"),
    ),
    "opennebula_vm_total": ("gauge", ()),
    "opennebula_vm_host_id": ("gauge", ("one_vm_id",)),
    "opennebula_vm_state": ("gauge", ("one_vm_id",)),
    "opennebula_vm_lcm_state": ("gauge", ("one_vm_id",)),
    "opennebula_vm_mem_total_bytes": ("gauge", ("one_vm_id",)),
    "opennebula_vm_cpu_ratio": ("gauge", ("one_vm_id",)),
    "opennebula_vm_cpu_vcpus": ("gauge", ("one_vm_id",)),
    "opennebula_vm_disks": ("gauge", ("one_vm_id",)),
    "opennebula_vm_disk_size_bytes": ("gauge", ("one_vm_id", "disk_id")),
    "opennebula_vm_nics": ("gauge", ("one_vm_id",)),
    "opennebula_vnet_free_lease_ratio": ("gauge", ("vnet_id", "vnet_name", "ar_id")),
    "opennebula_vm_backup_last_status": ("gauge", ("one_vm_id", "one_vm_name")),
    "opennebula_vm_backup_last_timestamp": ("gauge", ("one_vm_id", "one_vm_name")),
    "opennebula_vm_restore_last_status": ("gauge", ("one_vm_id", "one_vm_name")),
    "opennebula_vm_restore_last_timestamp": ("gauge", ("one_vm_id", "one_vm_name")),
}

HELP = {
    "opennebula_host_state": "Host state 0:init 2:monitored 3:error 4:disabled 8:offline",
    "opennebula_vm_state": "VM state 0:init 1:pending 2:hold 3:active 4:stopped "
    "5:suspended 6:done 8:poweroff 9:undeployed 10:clonning",
    "opennebula_vm_lcm_state": "VM LCM state, only relevant for state 3 (active)",
    "opennebula_datastore_free_bytes": "Available capacity in the datastore",
    "opennebula_vnet_free_lease_ratio": "Fraction of free leases in each VNet Address Range",
    "opennebula_oned_state": "OpenNebula oned service state 0:down 1:up",
}

VM_A = 'NAME="a"\nCPU="0.5"\nMEMORY="256"\nDISK=[TYPE="fs", SIZE="100"]\n'
VM_B = (
    'NAME="b"\nCPU="2"\nMEMORY="1024"\nVCPU="4"\nDISK=[TYPE="fs", SIZE="10"]\n'
    'DISK=[TYPE="swap", SIZE="20"]\n'
)


def scrape_of(core: Any, fqdn: str = "front.example") -> Scrape:
    return Scrape(core, DaemonMetrics(core, lambda _n: True), core.clock, None, fqdn)


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams: dict[str, Any], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in fams[name].samples}


def by_id(fams: dict[str, Any], name: str, key: str) -> dict[str, float]:
    return {s.labels[key]: s.value for s in fams[name].samples}


class ExporterFamiliesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        self.scrape = scrape_of(self.h.core)

    def render(self) -> dict[str, Any]:
        return families(self.scrape.render().decode())

    def test_every_exporter_family_with_its_type_and_labels(self) -> None:
        """Every family of opennebula-exporter is there, with its type and label names."""
        self.h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.h.ok("one.vm.allocate", VM_A, True)
        fams = self.render()
        for name, (kind, label_names) in EXPORTER.items():
            self.assertIn(name, fams)
            self.assertEqual(fams[name].type, kind, name)
            for sample in fams[name].samples:
                self.assertEqual(tuple(sample.labels), label_names, name)
        for name, text in HELP.items():
            self.assertEqual(fams[name].documentation, text)

    def test_hosts(self) -> None:
        """Host totals and per-host values (HOST_SHARE in bytes for memory)."""
        self.h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.h.ok("one.host.allocate", "host02", "dummy", "dummy", -1)
        self.h.ok("one.host.status", 1, 1)
        fams = self.render()
        self.assertEqual(fams["opennebula_host_total"].samples[0].value, 2)
        self.assertEqual(by_id(fams, "opennebula_host_state", "one_host_id"), {"0": 0, "1": 4})
        self.assertEqual(by_id(fams, "opennebula_host_vms", "one_host_id"), {"0": 0, "1": 0})

    def test_datastores_are_labelled_with_type_and_name(self) -> None:
        """The bootstrap datastores carry the exporter's type names."""
        fams = self.render()
        self.assertEqual(fams["opennebula_datastore_total"].samples[0].value, 3)
        got = {
            (s.labels["one_datastore_id"], s.labels["one_datastore_type"])
            for s in fams["opennebula_datastore_images"].samples
        }
        self.assertEqual(got, {("0", "SYSTEM"), ("1", "IMAGE"), ("2", "FILE")})
        names = {
            s.labels["one_datastore_name"] for s in fams["opennebula_datastore_free_bytes"].samples
        }
        self.assertEqual(names, {"system", "default", "files"})

    def test_vm_values(self) -> None:
        """Memory and disks in bytes, CPU as a ratio, VCPU defaulting to 1, one sample per
        disk, no host yet."""
        self.h.ok("one.vm.allocate", VM_A, True)
        self.h.ok("one.vm.allocate", VM_B, True)
        fams = self.render()
        self.assertEqual(fams["opennebula_vm_total"].samples[0].value, 2)
        self.assertEqual(by_id(fams, "opennebula_vm_state", "one_vm_id"), {"0": 2, "1": 2})
        self.assertEqual(
            by_id(fams, "opennebula_vm_mem_total_bytes", "one_vm_id"),
            {"0": 256 * 2**20, "1": 1024 * 2**20},
        )
        self.assertEqual(by_id(fams, "opennebula_vm_cpu_ratio", "one_vm_id"), {"0": 0.5, "1": 2.0})
        self.assertEqual(by_id(fams, "opennebula_vm_cpu_vcpus", "one_vm_id"), {"0": 1, "1": 4})
        self.assertEqual(by_id(fams, "opennebula_vm_disks", "one_vm_id"), {"0": 1, "1": 2})
        self.assertEqual(by_id(fams, "opennebula_vm_host_id", "one_vm_id"), {"0": -1, "1": -1})
        self.assertEqual(
            samples(fams, "opennebula_vm_disk_size_bytes"),
            {
                (("disk_id", "0"), ("one_vm_id", "0")): 100 * 2**20,
                (("disk_id", "0"), ("one_vm_id", "1")): 10 * 2**20,
                (("disk_id", "1"), ("one_vm_id", "1")): 20 * 2**20,
            },
        )
        self.assertEqual(by_id(fams, "opennebula_vm_nics", "one_vm_id"), {"0": 0, "1": 0})

    def test_a_changed_vm_is_rendered_again_and_done_vms_leave(self) -> None:
        """Cached lines follow the VM's stored document: a release shows PENDING, a
        terminated (DONE) VM is no longer listed, as in vmpool.info."""
        self.h.ok("one.vm.allocate", VM_A, True)
        self.h.ok("one.vm.allocate", VM_A.replace('"a"', '"c"'), True)
        self.render()
        self.h.ok("one.vm.action", "release", 0)
        self.h.ok("one.vm.action", "terminate-hard", 1)
        fams = self.render()
        self.assertEqual(by_id(fams, "opennebula_vm_state", "one_vm_id"), {"0": 1})
        self.assertEqual(fams["opennebula_vm_total"].samples[0].value, 1)

    def test_a_standalone_zone_has_no_ha_samples_and_servers_are_counted(self) -> None:
        """No SERVER_POOL: HA families without samples (as the exporter); with servers,
        every member counts (this daemon runs SOLO, never leader)."""
        fams = self.render()
        self.assertEqual(fams["opennebula_ha_members"].samples, [])
        self.h.ok(
            "one.zone.addserver", 0, 'SERVER=[NAME="one", ENDPOINT="http://127.0.0.1:2633/RPC2"]'
        )
        fams = self.render()
        self.assertEqual(fams["opennebula_ha_members"].samples[0].value, 1)
        self.assertEqual(fams["opennebula_ha_is_leader"].samples[0].value, 0)
        self.assertEqual(
            fams["opennebula_ha_members"].samples[0].labels, {"one_server_fqdn": "front.example"}
        )

    def test_service_states(self) -> None:
        """oned is up (it answers); the scheduler follows its driver; no systemd: 0."""
        fams = self.render()
        self.assertEqual(fams["opennebula_oned_state"].samples[0].value, 1)
        self.assertEqual(fams["opennebula_scheduler_state"].samples[0].value, 0)
        self.assertEqual(fams["opennebula_flow_state"].samples[0].value, 0)

    def test_backup_state_file(self) -> None:
        """state.json written by OpenNebula's backup/restore hook becomes the four
        families (missing keys give no sample, garbage entries are skipped)."""
        path = self.h.config.locations.var / "state.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "7": {"vm_id": "7", "vm_name": "web", "backup_status": 1, "backup_ts": 1700},
                    "8": {"vm_id": 8, "restore_status": "0", "restore_ts": "1800"},
                    "x": "garbage",
                    "y": {"vm_name": "no id"},
                }
            )
        )
        fams = self.render()
        self.assertEqual(
            samples(fams, "opennebula_vm_backup_last_status"),
            {(("one_vm_id", "7"), ("one_vm_name", "web")): 1},
        )
        self.assertEqual(
            samples(fams, "opennebula_vm_restore_last_timestamp"),
            {(("one_vm_id", "8"), ("one_vm_name", "unknown")): 1800},
        )
        self.assertEqual(fams["opennebula_vm_restore_last_status"].samples[0].value, 0)
        path.write_text("{not json")
        self.assertEqual(self.render()["opennebula_vm_backup_last_status"].samples, [])


class AddressRangeTests(VNetCase):
    def test_free_lease_ratio_per_address_range(self) -> None:
        """(SIZE - used leases) / SIZE, rounded to two decimals, per AR."""
        vid = self.net(NET_IP4)
        for i in range(5):
            self.one.ok("one.vn.hold", vid, f'LEASES=[IP="10.0.0.{10 + i}"]')
        fams = families(scrape_of(self.one.core).render().decode())
        self.assertEqual(
            samples(fams, "opennebula_vnet_free_lease_ratio"),
            {(("ar_id", "0"), ("vnet_id", str(vid)), ("vnet_name", "sample-net-ip4")): 0.9},
        )
