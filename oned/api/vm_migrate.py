"""``one.vm.migrate`` (mirrors ``VirtualMachineMigrateXRPC`` and the first half of
``VirtualMachineAPI::migrate``: target host, datastore, authorization).

The checks that need the VM locked (state, same host, capacity, clusters, system
datastore, VNC port) run in ``DispatchManager.migrate``, which the scheduler calls
too.
"""

from __future__ import annotations

from oned.api import shared
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.vm import VM, action_op, dispatcher, requester
from oned.core import Core
from oned.errors import ActionError, NoExistsError, no_exists
from oned.objects.base import Op
from oned.objects.host import OFFLINE


@rpc("one.vm.migrate", "iibbii", required=3)
async def migrate(
    core: Core,
    call: Call,
    oid: int,
    hid: int,
    live: bool,
    enforce: bool = False,
    ds_id: int = -1,
    mig_type: int = 0,
) -> int:
    """Migrate a Virtual Machine."""
    host = core.hosts.get(hid)
    if host is None:
        raise no_exists("host", hid)
    if host.state == OFFLINE:
        raise ActionError("Host is offline, cannot use it to deploy VM")
    requests = []
    if ds_id != -1:
        ds = core.datastores.get(ds_id)
        if ds is None:
            raise no_exists("datastore", ds_id)
        requests.append((Op.USE, shared.owned_auth("DATASTORE")(core, ds)))
    vm = core.vms.get(oid)
    if vm is None:
        raise no_exists("virtual machine", oid)
    requests[:0] = [
        (action_op(core, "migrate"), VM.auth(core, vm)),
        (Op.MANAGE, shared.system_auth("HOST")(core, host)),
    ]
    core.acl.check_all(call.caller, requests)
    placement = (host.oid, host.name, host.cluster_id, host.vm_mad, "", ds_id)
    try:
        await dispatcher(core).migrate(oid, placement, live, enforce, mig_type, requester(call))
    except NoExistsError as exc:
        if exc.word == "virtual machine":
            raise no_exists("virtual machine", oid) from exc
        raise
    return oid
