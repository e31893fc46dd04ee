"""``one.host.*``, ``one.hostpool.info`` and ``one.hostpool.monitoring`` (mirrors
``HostAPI``, ``HostPoolAPI`` and ``HostPool::allocate``).

Every host method but info/monitoring needs ADMIN on the host. Monitoring itself is
driven by ``oned.managers.information``; these handlers tell it about new, changed and
deleted hosts (it is ``None`` in driverless unit tests, and then nothing is monitored).
"""

from __future__ import annotations

from oned.api import shared
from oned.api.codec import WireParts
from oned.api.context import Call
from oned.api.registry import rpc
from oned.api.shared import Family
from oned.core import Core
from oned.errors import ActionError, AllocateError, ApiError, InternalError, no_exists
from oned.objects.base import Op
from oned.objects.host import EMPTY_MONITORING, Host
from oned.pools.monitoring import HostMonitoringStore

HOST = Family[Host](
    type_name="HOST",
    word="host",
    pool_root="HOST_POOL",
    pool=lambda core: core.hosts,
    auth=shared.system_auth("HOST"),
    name_scope="global",
    delete_op=Op.ADMIN,
    encrypted_attr="HOST_ENCRYPTED_ATTR",
)

ENABLED, DISABLED, OFFLINE = 0, 1, 2
DEFAULT_EXPIRATION = 43200


def hostname_problem(name: str) -> str | None:
    """``hostname_is_valid``: 2-63 characters, alphanumerics and ``-._`` inside."""
    if len(name) < 2 or len(name) > 63:
        return (
            "Invalid HOSTNAME, HOSTNAME length should be greater than 1, "
            "but smaller than 64 characters"
        )
    if name[0] in "-._":
        return f"Invalid HOSTNAME, first character can't be '{name[0]}'"
    for ch in name:
        if not (ch.isascii() and ch.isalnum()) and ch not in "-._":
            return f"Invalid HOSTNAME, '{ch}' is invalid character for a HOSTNAME"
    if name[-1] in "-._":
        return f"Invalid HOSTNAME, last character can't be '{name[-1]}'"
    return None


def monitoring_store(core: Core) -> HostMonitoringStore:
    """The information manager's sample store, or a reader of the table."""
    manager = core.information_manager
    if manager is not None:
        return manager.monitoring
    expiration = int(core.config.get("HOST_MONITORING_EXPIRATION_TIME") or DEFAULT_EXPIRATION)
    return HostMonitoringStore(core.db, expiration)


def with_monitoring(core: Core, body: str, oid: int) -> str:
    """A stored body with the host's last monitoring sample in place of ``<MONITORING/>``."""
    manager = core.information_manager
    sample = manager.monitoring.last(oid) if manager is not None else None
    if not sample:
        return body
    cut = body.rfind(EMPTY_MONITORING)
    if cut < 0:
        return body
    return body[:cut] + sample + body[cut + len(EMPTY_MONITORING) :]


@rpc("one.host.allocate", "sssi")
async def allocate(
    core: Core, call: Call, name: str, im_mad: str, vm_mad: str, cluster_id: int
) -> int:
    """Allocates a new host in OpenNebula."""
    if cluster_id == -1:
        cluster_id = 0
    cluster = core.clusters.get(cluster_id)
    if cluster is None:
        raise no_exists("cluster", cluster_id)
    core.acl.check_all(
        call.caller,
        [
            (Op.CREATE, shared.ObjectAuth("HOST", -1)),
            (Op.ADMIN, shared.system_auth("CLUSTER")(core, cluster)),
        ],
    )
    problem = hostname_problem(name) or shared.validate_name(name)
    if problem:
        raise AllocateError(problem)
    if not im_mad:
        raise AllocateError("IM_MAD_NAME cannot be empty.")
    if not vm_mad:
        raise AllocateError("VMM_MAD_NAME cannot be empty.")
    clash = core.hosts.by_name(name)
    if clash is not None:
        raise AllocateError(f"NAME is already taken by HOST {clash.oid}.")
    async with core.clusters.lock(cluster_id):
        cluster = core.clusters.get(cluster_id)
        if cluster is None:
            raise no_exists("cluster", cluster_id)
        unit = core.unit()
        oid = unit.allocate(core.hosts)
        host = Host.new(oid, name, im_mad, vm_mad, cluster.oid, cluster.name)
        unit.add(core.hosts, host)
        cluster = cluster.copy()
        cluster.hosts.add(oid)
        unit.save(core.clusters, cluster)
        try:
            await unit.commit(f"allocate host {name}")
        except Exception as exc:
            raise AllocateError(f"NAME is already taken by HOST {name}.") from exc
    if core.information_manager is not None:
        core.information_manager.host_added(host)
    return oid


@rpc("one.host.delete", "i")
async def delete(core: Core, call: Call, oid: int) -> int:
    """Deletes the given host from the pool."""
    shared.get_authorized(core, call, HOST, oid, Op.ADMIN)
    host = shared.get_object(core, HOST, oid)
    async with core.hosts.lock(oid), core.clusters.lock(host.cluster_id):
        host = shared.get_object(core, HOST, oid)
        if host.share.running_vms > 0 or host.vms:
            raise ActionError("Cannot delete host. Can not remove a host with running VMs")
        unit = core.unit()
        unit.drop(core.hosts, oid)
        cluster = core.clusters.get(host.cluster_id)
        if cluster is not None and oid in cluster.hosts:
            cluster = cluster.copy()
            cluster.hosts.discard(oid)
            unit.save(core.clusters, cluster)
        store = monitoring_store(core)
        unit.sql(store.delete(oid), lambda: store.forget(oid))
        shared.drop_resource_rules(core, unit, "HOST", oid)
        await unit.commit(f"delete host {oid}")
    if core.information_manager is not None:
        core.information_manager.host_deleted(host)
    return oid


@rpc("one.host.info", "ib", required=1)
async def info(core: Core, call: Call, oid: int, decrypt: bool = False) -> str:
    """Returns host information."""
    host = shared.get_authorized(core, call, HOST, oid, Op.USE, ignore_lock=True)
    return with_monitoring(core, shared.info_body(core, call, HOST, host, decrypt), oid)


@rpc("one.host.update", "isi", required=2)
async def update(core: Core, call: Call, oid: int, text: str, mode: int = 0) -> int:
    """Updates the host template."""
    shared.get_authorized(core, call, HOST, oid, Op.ADMIN)
    if mode not in (0, 1):
        raise ApiError("Wrong update type")
    try:
        new = shared.parse_str_or_xml(text)
    except shared.TemplateSyntaxError as exc:
        raise InternalError(f"Cannot update template. {exc.parse_error}") from exc
    async with core.hosts.lock(oid):
        host = shared.get_object(core, HOST, oid).copy()
        if mode == 0:
            host.template = new
        else:
            host.template.merge(new)
        cluster = core.clusters.get(host.cluster_id)
        host.post_update_template(cluster.template if cluster is not None else None)
        encrypted = core.attr_list(HOST.encrypted_attr)
        if encrypted:
            host.template = core.one_key.encrypt_template(host.template, encrypted)
        await shared.save(core, HOST, host.saved(), f"update host {oid}")
    return oid


@rpc("one.host.rename", "is")
async def rename(core: Core, call: Call, oid: int, name: str) -> int:
    """Renames the host."""
    shared.get_authorized(core, call, HOST, oid, Op.ADMIN)
    await shared.rename(core, call, HOST, oid, name)
    await _rename_vms(core, oid)
    return oid


async def _rename_vms(core: Core, oid: int) -> None:
    """``HostAPI::batch_rename``: VMs placed on the host show its new HOSTNAME."""
    host = core.hosts.get(oid)
    if host is None:
        return
    for vid in sorted(host.vms):
        async with core.vms.lock(vid):
            vm = core.vms.get(vid)
            current = vm.current if vm is not None else None
            if vm is None or current is None or current.hid != oid:
                continue
            if current.hostname == host.name:
                continue
            vm = vm.copy()
            record = vm.current
            assert record is not None
            record.hostname = host.name
            unit = core.unit()
            unit.save(core.vms, vm)
            unit.sql(core.vms.history_row(vm, record))
            await unit.commit(f"hostname of vm {vid}")


@rpc("one.host.status", "ii")
async def status(core: Core, call: Call, oid: int, new_status: int) -> int:
    """Sets the status of the host: 0 enabled, 1 disabled, 2 offline."""
    shared.get_authorized(core, call, HOST, oid, Op.ADMIN)
    async with core.hosts.lock(oid):
        host = shared.get_object(core, HOST, oid).copy()
        old_state = host.state
        if new_status == ENABLED:
            host.enable()
        elif new_status == DISABLED:
            host.disable()
        elif new_status == OFFLINE:
            host.offline()
        else:
            raise InternalError("Wrong status code")
        await shared.save(core, HOST, host.saved(), f"status of host {oid}")
    if core.information_manager is not None:
        core.information_manager.host_changed(old_state, host)
    return oid


@rpc("one.hostpool.info", "")
async def pool_info(core: Core, call: Call) -> WireParts:
    """Returns the host pool (stored bodies, each escaped once per change)."""
    return shared.pool_document("HOST_POOL", shared.filtered(core, call, HOST), core.hosts)


@rpc("one.host.monitoring", "i")
async def monitoring(core: Core, call: Call, oid: int) -> str:
    """Returns the host monitoring records."""
    shared.get_authorized(core, call, HOST, oid, Op.USE)
    return await monitoring_store(core).dump([oid], -1, core.now())


@rpc("one.hostpool.monitoring", "i", required=0)
async def pool_monitoring(core: Core, call: Call, seconds: int = -1) -> str:
    """Returns the host monitoring records of the pool."""
    if core.acl.whole_pool(call.caller, "HOST"):
        hids = [h.oid for h in core.hosts.objects()]
    else:
        hids = [h.oid for h in shared.filtered(core, call, HOST)]
    return await monitoring_store(core).dump(hids, seconds, core.now())
