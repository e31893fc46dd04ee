"""The scheduler end to end: a real ``oned -f`` with our ``one_sched`` and the rank
placer places VMs allocated with pyone on dummy hosts (no ``one.vm.deploy``), spread
by the default striping rank, and leaves a VM no host meets PENDING with oned's
SCHED_MESSAGE."""

from __future__ import annotations

import time
from collections import Counter

import pyone
import pytest

from .conftest import Daemon, MakeDaemon

pytestmark = pytest.mark.slow

KNOBS = (
    "SCHED_MAX_WND_TIME = 1\nSCHED_MAX_WND_LENGTH = 7\nSCHED_RETRY_TIME = 2\nMANAGER_TIMER = 1\n"
)


def test_rank_places_pending_vms_and_reports_unmet_requirements(
    make_daemon: MakeDaemon, tmp_path: object
) -> None:
    from pathlib import Path

    d: Daemon = make_daemon(Path(str(tmp_path)) / "one", extra_conf=KNOBS)
    d.start()
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hosts = [one.host.allocate(f"host{i:02d}", "dummy", "dummy", -1) for i in range(3)]
    deadline = time.monotonic() + 30
    while any(one.host.info(h).STATE != 2 for h in hosts):
        assert time.monotonic() < deadline, "hosts not MONITORED"
        time.sleep(0.2)
    vids = [
        one.vm.allocate(f'NAME="v{i}"\nCPU="0.1"\nVCPU="1"\nMEMORY="64"', False) for i in range(10)
    ]
    stuck = one.vm.allocate(
        'NAME="nowhere"\nCPU="0.1"\nMEMORY="64"\nSCHED_REQUIREMENTS="HOSTNAME = \\"nohost*\\""',
        False,
    )
    deadline = time.monotonic() + 90
    while True:
        infos = [one.vm.info(v) for v in vids]
        if all((vm.STATE, vm.LCM_STATE) == (3, 3) for vm in infos):
            break
        assert time.monotonic() < deadline, [(vm.ID, vm.STATE, vm.LCM_STATE) for vm in infos]
        time.sleep(0.2)
    placed = Counter(int(vm.HISTORY_RECORDS.HISTORY[-1].HID) for vm in infos)
    assert set(placed) == set(hosts)
    assert max(placed.values()) - min(placed.values()) <= 1  # striping: 4/3/3
    vm = one.vm.info(stuck)
    assert vm.STATE == 1
    message = vm.USER_TEMPLATE.get("SCHED_MESSAGE", "")
    assert message.endswith(" : Cannot dispatch VM: No host meets SCHED_REQUIREMENTS"), message
    share = [one.host.info(h).HOST_SHARE.RUNNING_VMS for h in hosts]
    assert sum(share) == 10
    # cluster plans through pyone: OPTIMIZE goes to one_drs (a balanced cluster: no plan)
    assert one.cluster.optimize(0) == 0
    with pytest.raises(pyone.OneActionException, match=r"Plan is not ready"):
        one.cluster.planexecute(0)
    with pytest.raises(pyone.OneActionException, match=r"Plan for cluster 0 does not exist"):
        one.cluster.plandelete(0)
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting cluster \[77\]"):
        one.cluster.optimize(77)
