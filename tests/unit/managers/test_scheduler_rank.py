"""The rank placer on hand-made SCHEDULER_DRIVER_ACTION documents, and its script."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from lxml import etree

from oned.managers.scheduler.rank import RankConf, place

PLACE = Path(__file__).resolve().parents[3] / "drivers/remotes/scheduler/rank/place"


def host(
    hid: int,
    cid: int = 0,
    cpu: int = 400,
    used_cpu: int = 0,
    mem: int = 4 << 20,
    running: int = 0,
    ds_free: int = 0,
    extra: str = "",
) -> str:
    return (
        f"<HOST><ID>{hid}</ID><NAME>h{hid}</NAME><STATE>2</STATE><CLUSTER_ID>{cid}</CLUSTER_ID>"
        f"<HOST_SHARE><MEM_USAGE>0</MEM_USAGE><CPU_USAGE>{used_cpu}</CPU_USAGE>"
        f"<MAX_MEM>{mem}</MAX_MEM><MAX_CPU>{cpu}</MAX_CPU><RUNNING_VMS>{running}</RUNNING_VMS>"
        f"<DATASTORES><DS><ID>0</ID><FREE_MB>{ds_free}</FREE_MB></DS></DATASTORES></HOST_SHARE>"
        f"<VMS/><TEMPLATE>{extra}</TEMPLATE></HOST>"
    )


def ds(did: int, clusters: tuple[int, ...] = (0,), free: int = 1000, shared: bool = True) -> str:
    ids = "".join(f"<ID>{c}</ID>" for c in clusters)
    return (
        f"<DATASTORE><ID>{did}</ID><TYPE>1</TYPE><CLUSTERS>{ids}</CLUSTERS>"
        f"<TOTAL_MB>2000</TOTAL_MB><FREE_MB>{free}</FREE_MB>"
        f"<TEMPLATE><SHARED>{'YES' if shared else 'NO'}</SHARED></TEMPLATE></DATASTORE>"
    )


def vm(
    vid: int, cpu: float = 1, mem: int = 512, user: str = "", nics: str = "", disks: str = ""
) -> str:
    return (
        f"<VM><ID>{vid}</ID><UID>0</UID><GID>0</GID><STATE>1</STATE><LCM_STATE>0</LCM_STATE>"
        f"<RESCHED>0</RESCHED><TEMPLATE><CPU>{cpu}</CPU><MEMORY>{mem}</MEMORY>{nics}{disks}"
        f"</TEMPLATE><USER_TEMPLATE>{user}</USER_TEMPLATE><HISTORY_RECORDS/></VM>"
    )


def doc(
    vms: list[str], hosts: list[str], dss: list[str], reqs: dict[int, tuple], vnets: str = ""
) -> str:
    req = ""
    for vid, (hids, dids, *nics) in reqs.items():
        req += f"<VM><ID>{vid}</ID><HOSTS>" + "".join(f"<ID>{h}</ID>" for h in hids)
        req += "</HOSTS><DATASTORES>" + "".join(f"<ID>{d}</ID>" for d in dids) + "</DATASTORES>"
        for nic_id, nets in nics[0] if nics else []:
            req += f"<NIC><ID>{nic_id}</ID><VNETS>"
            req += "".join(f"<ID>{n}</ID>" for n in nets) + "</VNETS></NIC>"
        req += "</VM>"
    return (
        f"<SCHEDULER_DRIVER_ACTION><VM_POOL>{''.join(vms)}</VM_POOL>"
        f"<HOST_POOL>{''.join(hosts)}</HOST_POOL><DATASTORE_POOL>{''.join(dss)}</DATASTORE_POOL>"
        f"<VNET_POOL>{vnets}</VNET_POOL><VM_GROUP_POOL/><CLUSTER_POOL/>"
        f"<REQUIREMENTS>{req}</REQUIREMENTS></SCHEDULER_DRIVER_ACTION>"
    )


def actions(plan: str) -> list[tuple[int, int, int, str]]:
    root = etree.fromstring(plan.encode())
    assert root.findtext("ID") == "-1"
    return [
        (
            int(a.findtext("VM_ID")),
            int(a.findtext("HOST_ID")),
            int(a.findtext("DS_ID")),
            a.findtext("OPERATION") or "",
        )
        for a in root.findall("ACTION")
    ]


def test_striping_spreads_one_vm_per_host_per_round() -> None:
    hosts = [host(0, running=2), host(1, running=0), host(2, running=1)]
    vms = [vm(i) for i in range(5)]
    plan, logs = place(doc(vms, hosts, [ds(0)], {i: ([0, 1, 2], [0]) for i in range(5)}))
    got = actions(plan)
    # fewest RUNNING_VMS first; MAX_HOST = 1 leaves VMs 3 and 4 for the next round
    assert got == [(0, 1, 0, "deploy"), (1, 2, 0, "deploy"), (2, 0, 0, "deploy")]
    assert "ERROR: 3 Cannot dispatch VM to any Host. Check VM log for detailed reasons." in logs
    assert "ERROR: 3 [HOST] Dispatch limit reached on hosts: 0,1,2" in logs


def test_packing_rank_and_max_host_zero() -> None:
    hosts = [host(0, running=0), host(1, running=3)]
    vms = [vm(i, user="<SCHED_RANK>RUNNING_VMS</SCHED_RANK>") for i in range(3)]
    conf = RankConf(max_host=0)
    plan, _ = place(doc(vms, hosts, [ds(0)], {i: ([0, 1], [0]) for i in range(3)}), conf)
    assert [a[1] for a in actions(plan)] == [1, 1, 1]


def test_only_the_hosts_oned_matched_and_capacity() -> None:
    hosts = [host(0, cpu=100, used_cpu=50), host(1, mem=1024), host(2)]
    vms = [vm(0, cpu=1, mem=512), vm(1, cpu=1, mem=512)]
    plan, logs = place(doc(vms, hosts, [ds(0)], {0: ([0, 1], [0]), 1: ([0, 1, 2], [0])}))
    assert actions(plan) == [(1, 2, 0, "deploy")]
    # VM 0 fits nowhere among the hosts it may use: CPU on 0, memory (KB) on 1
    assert logs == [
        "ERROR: 0 [HOST] Not enough CPU on hosts: 0[HOST] Not enough MEMORY on hosts: 1"
    ]


def test_user_priority_goes_first() -> None:
    hosts = [host(0)]
    vms = [vm(0), vm(1, user="<USER_PRIORITY>10</USER_PRIORITY>")]
    plan, _ = place(doc(vms, hosts, [ds(0)], {0: ([0], [0]), 1: ([0], [0])}))
    assert [a[0] for a in actions(plan)] == [1]


def test_datastore_choice_cluster_capacity_and_rank() -> None:
    hosts = [host(0, cid=100, ds_free=50)]
    dss = [
        ds(0, clusters=(0,)),
        ds(1, clusters=(100,), free=10),
        ds(2, clusters=(100,), free=900),
        ds(3, clusters=(100,), free=800),
        ds(4, clusters=(100,), shared=False),
    ]
    disk = "<DISK><TYPE>fs</TYPE><SIZE>100</SIZE></DISK>"
    vms = [vm(0, disks=disk), vm(1, disks=disk, user="<SCHED_DS_RANK>- FREE_MB</SCHED_DS_RANK>")]
    conf = RankConf(max_host=0)
    plan, _ = place(doc(vms, hosts, dss, {0: ([0], [0, 1, 2, 3]), 1: ([0], [0, 1, 2, 3])}), conf)
    # striping: most FREE_MB; DS 0 is not in the host's cluster, DS 1 is too small
    assert actions(plan) == [(0, 0, 2, "deploy"), (1, 0, 3, "deploy")]
    # a local system datastore uses the host's own free space (50 MB < 100 MB)
    plan, logs = place(doc([vm(0, disks=disk)], hosts, dss, {0: ([0], [4])}))
    assert actions(plan) == []
    assert any("[DS] Not enough capacity on datastores: 4" in line for line in logs)


def test_unmonitored_shared_datastore() -> None:
    plan, logs = place(
        doc(
            [vm(0)],
            [host(0)],
            [ds(0).replace("<TOTAL_MB>2000", "<TOTAL_MB>0").replace("<FREE_MB>1000", "<FREE_MB>0")],
            {0: ([0], [0])},
        )
    )
    assert actions(plan) == []
    assert logs == ["ERROR: 0 [DS] Unmonitored datastores: 0"]


def test_auto_nics_pick_networks_with_leases_in_the_cluster() -> None:
    vnets = "".join(
        f"<VNET><ID>{n}</ID><CLUSTERS><ID>{c}</ID></CLUSTERS><USED_LEASES>{u}</USED_LEASES>"
        f"<AR_POOL><AR><SIZE>{s}</SIZE></AR></AR_POOL></VNET>"
        for n, c, u, s in ((0, 0, 1, 10), (1, 0, 5, 5), (2, 1, 0, 10), (3, 0, 0, 10))
    )
    nics = (
        "<NIC><NIC_ID>0</NIC_ID><NETWORK_MODE>auto</NETWORK_MODE></NIC>"
        "<NIC><NIC_ID>1</NIC_ID><NETWORK_MODE>auto</NETWORK_MODE></NIC>"
    )
    plan, logs = place(
        doc(
            [vm(0, nics=nics)],
            [host(0)],
            [ds(0)],
            {0: ([0], [0], [(0, [0, 1, 2, 3]), (1, [0, 3])])},
            vnets,
        )
    )
    root = etree.fromstring(plan.encode())
    got = [
        (int(n.findtext("NIC_ID")), int(n.findtext("NETWORK_ID")))
        for n in root.findall("ACTION/NIC")
    ]
    # network 1 is full, 2 is in another cluster; striping prefers fewer USED_LEASES (3),
    # and DIFFERENT_VNETS sends NIC 1 to another network
    assert got == [(0, 3), (1, 0)], (plan, logs)


def test_place_script_reads_base64_and_writes_the_plan() -> None:
    text = doc([vm(7)], [host(4)], [ds(0)], {7: ([4], [0])})
    proc = subprocess.run(
        [sys.executable, str(PLACE)],
        input=base64.b64encode(text.encode()),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert actions(proc.stdout.decode()) == [(7, 4, 0, "deploy")]
    bad = subprocess.run(
        [sys.executable, str(PLACE)],
        input=b"bm90IHhtbA==",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode != 0


def test_image_datastore_capacity() -> None:
    image_ds = "<DATASTORE><ID>1</ID><TYPE>0</TYPE><FREE_MB>150</FREE_MB></DATASTORE>"
    disk = (
        "<DISK><IMAGE_ID>0</IMAGE_ID><DATASTORE_ID>1</DATASTORE_ID><SIZE>100</SIZE>"
        "<CLONE>YES</CLONE><CLONE_TARGET>SELF</CLONE_TARGET></DISK>"
    )
    vms = [vm(0, disks=disk), vm(1, disks=disk)]
    conf = RankConf(max_host=0)
    plan, logs = place(doc(vms, [host(0)], [ds(0), image_ds], {0: ([0], [0]), 1: ([0], [0])}), conf)
    # the first clone takes 100 of the 150 MB: the second one no longer fits
    assert [a[0] for a in actions(plan)] == [0]
    assert logs == ["ERROR: 1 Cannot dispatch VM. Image Datastore 1 does not have enough capacity"]
    big = disk.replace("<SIZE>100</SIZE>", "<SIZE>200</SIZE>")
    plan, logs = place(doc([vm(2, disks=big)], [host(0)], [ds(0), image_ds], {2: ([0], [0])}))
    assert actions(plan) == []
    assert logs == ["ERROR: 2 Cannot schedule VM. Image Datastore 1 does not have enough capacity"]


def group(roles: str, tmpl: str = "") -> str:
    return (
        f"<VM_GROUP_POOL><VM_GROUP><ID>0</ID><ROLES>{roles}</ROLES>"
        f"<TEMPLATE>{tmpl}</TEMPLATE></VM_GROUP></VM_GROUP_POOL>"
    )


def with_groups(text: str, groups: str, extra_vms: str = "") -> str:
    text = text.replace("<VM_GROUP_POOL/>", groups)
    return text.replace("</VM_POOL>", extra_vms + "</VM_POOL>")


def role(rid: int, name: str, policy: str, vms: str, extra: str = "") -> str:
    return (
        f"<ROLE><ID>{rid}</ID><NAME>{name}</NAME><POLICY>{policy}</POLICY>"
        f"<VMS>{vms}</VMS>{extra}</ROLE>"
    )


def test_vm_group_anti_affinity_spreads_a_role() -> None:
    hosts = [host(0), host(1), host(2)]
    text = doc([vm(i) for i in range(3)], hosts, [ds(0)], {i: ([0, 1, 2], [0]) for i in range(3)})
    plan, _ = place(
        with_groups(text, group(role(0, "db", "ANTI_AFFINED", "0,1,2"))), RankConf(max_host=0)
    )
    assert sorted(a[1] for a in actions(plan)) == [0, 1, 2]


def test_vm_group_affinity_follows_running_members_and_host_rules() -> None:
    running = (
        "<VM><ID>9</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE><TEMPLATE/><USER_TEMPLATE/>"
        "<HISTORY_RECORDS><HISTORY><HID>2</HID></HISTORY></HISTORY_RECORDS></VM>"
    )
    hosts = [host(0), host(1), host(2)]
    text = doc([vm(0), vm(1)], hosts, [ds(0)], {0: ([0, 1, 2], [0]), 1: ([0, 1, 2], [0])})
    roles = role(0, "web", "AFFINED", "0,9") + role(
        1, "db", "NONE", "1", "<HOST_ANTI_AFFINED>0,1</HOST_ANTI_AFFINED>"
    )
    plan, logs = place(with_groups(text, group(roles), running), RankConf(max_host=0))
    # VM 0 joins VM 9 on host 2; VM 1 may not use hosts 0 and 1
    assert sorted((a[0], a[1]) for a in actions(plan)) == [(0, 2), (1, 2)], logs


def test_vm_group_affined_set_with_a_leader() -> None:
    hosts = [host(0, cpu=150), host(1, cpu=400)]
    text = doc([vm(0), vm(1)], hosts, [ds(0)], {0: ([0, 1], [0]), 1: ([0, 1], [0])})
    plan, logs = place(
        with_groups(text, group(role(0, "web", "AFFINED", "0,1"))), RankConf(max_host=0)
    )
    # the leader (VM 0) carries both VMs' CPU: only host 1 fits; VM 1 follows next round
    assert [(a[0], a[1]) for a in actions(plan)] == [(0, 1)]
    assert "ERROR: 1 [HOST] Cannot fulfill affinity constraints on hosts: 0,1" in logs


def test_vm_group_inter_role_anti_affinity() -> None:
    running = (
        "<VM><ID>9</ID><STATE>3</STATE><LCM_STATE>3</LCM_STATE><TEMPLATE/><USER_TEMPLATE/>"
        "<HISTORY_RECORDS><HISTORY><HID>0</HID></HISTORY></HISTORY_RECORDS></VM>"
    )
    host0 = host(0).replace("<VMS/>", "<VMS><ID>9</ID></VMS>")
    text = doc([vm(0)], [host0, host(1)], [ds(0)], {0: ([0, 1], [0])})
    roles = role(0, "web", "NONE", "0") + role(1, "db", "NONE", "9")
    plan, _ = place(
        with_groups(text, group(roles, "<ANTI_AFFINED>web, db</ANTI_AFFINED>"), running)
    )
    assert [(a[0], a[1]) for a in actions(plan)] == [(0, 1)]


DRS = Path(__file__).resolve().parents[3] / "drivers/remotes/scheduler/one_drs/optimize"


def running_vm(vid: int, hid: int, cpu: float = 1, mem: int = 512) -> str:
    return (
        vm(vid, cpu=cpu, mem=mem)
        .replace("<STATE>1</STATE>", "<STATE>3</STATE>")
        .replace(
            "<HISTORY_RECORDS/>",
            f"<HISTORY_RECORDS><HISTORY><HID>{hid}</HID><DS_ID>0</DS_ID></HISTORY></HISTORY_RECORDS>",
        )
    )


def test_drs_balances_a_cluster() -> None:
    from oned.managers.scheduler.drs import optimize

    hosts = [host(0, used_cpu=300), host(1, used_cpu=0), host(2, used_cpu=100)]
    vms = [running_vm(0, 0), running_vm(1, 0), running_vm(2, 0), running_vm(3, 2)]
    text = doc(vms, hosts, [ds(0)], {i: ([0, 1, 2], [0]) for i in range(4)})
    plan = optimize(text, 0)
    root = etree.fromstring(plan.encode())
    assert root.findtext("ID") == "0"
    moves = [(int(a.findtext("VM_ID")), int(a.findtext("HOST_ID"))) for a in root.findall("ACTION")]
    # 300/0/100 % of CPU: one VM from host 0 to host 1 levels it to 200/100/100
    assert moves == [(0, 1)]
    assert {a.findtext("OPERATION") for a in root.findall("ACTION")} == {"migrate"}
    balanced = doc([running_vm(0, 0), running_vm(1, 1)], hosts[:2], [ds(0)], {})
    assert "<ACTION>" not in optimize(balanced, 0)


def test_drs_script_and_one_drs_place() -> None:
    text = doc(
        [running_vm(0, 0), running_vm(1, 0)],
        [host(0, used_cpu=200), host(1)],
        [ds(0)],
        {0: ([0, 1], [0]), 1: ([0, 1], [0])},
    )
    proc = subprocess.run(
        [sys.executable, str(DRS), "100"],
        input=base64.b64encode(text.encode()),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert "<ID>100</ID>" in proc.stdout.decode()
    place_doc = doc([vm(7)], [host(4)], [ds(0)], {7: ([4], [0])})
    placed = subprocess.run(
        [str(DRS.parent / "place")],
        input=base64.b64encode(place_doc.encode()),
        capture_output=True,
        check=False,
        timeout=30,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
    )
    assert placed.returncode == 0, placed.stderr
    assert actions(placed.stdout.decode()) == [(7, 4, 0, "deploy")]
