"""``kill -9`` in the middle of a burst of lifecycle actions (migrations included) on a
real ``oned -f``: after the restart every VM settles in a resting state, each host
holds exactly the VMs placed on it, and the network leases match the VMs alive."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyone
import pytest

from .conftest import MakeDaemon
from .test_vms import ACTIVE, RUNNING, client, setup_infra, wait_for

pytestmark = pytest.mark.slow

#: LCM states a VM may rest in (nothing in flight): RUNNING, UNKNOWN and the failures.
_RESTING_LCM = {3, 16, *range(36, 51), 44, 46, 61}
_PLACED = {ACTIVE, 5, 8}  # ACTIVE, SUSPENDED, POWEROFF hold their host
_SLOW = ("deploy", "save", "restore", "migrate", "shutdown", "cancel")


def _rests(vm: pyone.bindings.VM) -> bool:
    return vm.STATE != ACTIVE or vm.LCM_STATE in _RESTING_LCM


def _settle(one: pyone.OneServer, vids: list[int], secs: float = 60) -> dict[int, object]:
    deadline = time.monotonic() + secs
    while True:
        vms = {vid: one.vm.info(vid) for vid in vids}
        moving = {vid: (vm.STATE, vm.LCM_STATE) for vid, vm in vms.items() if not _rests(vm)}
        if not moving:
            return dict(vms)
        if time.monotonic() > deadline:
            raise AssertionError(f"VMs still moving: {moving}")
        time.sleep(0.2)


def test_kill9_during_a_burst_settles_every_vm(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deploys, live and cold migrations, poweroffs, suspends and terminates are in
    flight at a kill -9; after the restart all VMs rest, capacity and leases agree."""
    actions = tmp_path / "dummy_actions"
    actions.mkdir()
    monkeypatch.setenv("ONE_DUMMY_ACTIONS_DIR", str(actions))
    d = make_daemon(tmp_path / "one")
    d.start()
    one = client(d)
    hids = setup_infra(one, hosts=3)
    net = one.vn.allocate(
        'NAME="n"\nVN_MAD="dummy"\nBRIDGE="br0"\nAR=[TYPE="IP4",IP="10.1.0.1",SIZE="64"]', -1
    )
    vids = []
    for i in range(12):
        nic = f'\nNIC=[NETWORK_ID="{net}"]' if i % 2 else ""
        # on hold: placed by the test, not by the scheduler
        vid = one.vm.allocate(f'NAME="c{i}"\nCPU="0.5"\nMEMORY="64"{nic}', True)
        one.vm.deploy(vid, hids[i % 3])
        vids.append(vid)
    for vid in vids:
        wait_for(one, vid, ACTIVE, RUNNING)
    for name in _SLOW:
        (actions / name).write_text("success 30\n")
    fresh = [one.vm.allocate(f'NAME="f{i}"\nCPU="0.5"\nMEMORY="64"', True) for i in range(3)]
    burst = [
        lambda: one.vm.migrate(vids[0], hids[1], True, False, -1, 0),
        lambda: one.vm.migrate(vids[1], hids[2], False, False, -1, 0),
        lambda: one.vm.migrate(vids[2], hids[0], False, False, -1, 1),
        lambda: one.vm.migrate(vids[3], hids[2], True, False, -1, 0),
        lambda: one.vm.action("poweroff", vids[4]),
        lambda: one.vm.action("suspend", vids[5]),
        lambda: one.vm.action("terminate", vids[6]),
        lambda: one.vm.action("terminate-hard", vids[7]),
        lambda: one.vm.action("undeploy", vids[8]),
        lambda: one.vm.action("stop", vids[9]),
        *(lambda v=v, i=i: one.vm.deploy(v, hids[i % 3]) for i, v in enumerate(fresh)),
    ]
    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(call) for call in burst]:
            future.result()
    wait_for(one, vids[0], ACTIVE, 4)  # MIGRATE: the live migration is in flight
    wait_for(one, vids[1], ACTIVE, 7)  # SAVE_MIGRATE
    d.stop(signal.SIGKILL)
    for name in _SLOW:
        (actions / name).unlink()
    d.start()
    one = client(d)
    every = vids + fresh
    vms = _settle(one, every)
    assert (vms[vids[0]].STATE, vms[vids[0]].LCM_STATE) == (ACTIVE, RUNNING)
    assert vms[vids[0]].HISTORY_RECORDS.HISTORY[-1].HID == hids[1]
    assert vms[vids[1]].HISTORY_RECORDS.HISTORY[-1].HID == hids[2]
    assert [vms[v].STATE for v in vids[4:10]] == [8, 5, 6, 6, 9, 4]

    placed: dict[int, set[int]] = {h: set() for h in hids}
    for vid, vm in vms.items():
        if vm.STATE in _PLACED:
            placed[vm.HISTORY_RECORDS.HISTORY[-1].HID].add(vid)
    for hid in hids:
        host = one.host.info(hid)
        ids = set(host.VMS.ID) if host.VMS is not None else set()
        assert ids == placed[hid], (hid, ids, placed[hid])
        share = host.HOST_SHARE
        assert (share.CPU_USAGE, share.MEM_USAGE, share.RUNNING_VMS) == (
            50 * len(ids),
            65536 * len(ids),
            len(ids),
        )
    alive_with_nic = {v for i, v in enumerate(vids) if i % 2 and vms[v].STATE != 6}
    leases = one.vn.info(net).AR_POOL.AR[0].LEASES
    assert {lease.VM for lease in (leases.LEASE if leases is not None else [])} == alive_with_nic
