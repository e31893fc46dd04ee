"""RPC method registry (mirrors ``RequestXRPC`` construction and ``Request::execute``).

Each ``one.*`` method is declared once with ``@rpc(name, params, required=...)``; the
parameter kinds after the session are ``i`` (int), ``I`` (i8), ``s`` (string), ``b``
(boolean), ``A`` (array) and ``*`` (any: the handler checks it). Checking them here
gives xmlrpc-c's -501 faults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oned.api.codec import I8, INT32_MAX, INT32_MIN
from oned.errors import RpcFault, not_enough_parameters

if TYPE_CHECKING:
    from oned.api.context import Call
    from oned.core import Core

Handler = Callable[..., Awaitable[Any]]

_TYPE_FAULT = {
    "i": "Parameter that is supposed to be integer is not",
    "I": "Parameter that is supposed to be 64-bit integer is not",
    "s": "Parameter that is supposed to be a string is not",
    "b": "Parameter that is supposed to be boolean is not",
    "A": "Parameter that is supposed to be an array is not",
}

_SIG = {"i": "i", "I": "I", "s": "s", "b": "b", "A": "A", "*": "A"}


# What oned registers for each method (``RequestXRPC(name, help, signature)``), served
# by system.methodHelp / system.methodSignature: "<name> <signature> <help>" per line.
_ONED_INTROSPECTION = """
one.acl.addrule A:sssss Adds a new ACL rule
one.acl.delrule A:si Deletes an existing ACL rule
one.acl.info A:s Returns the ACL rule set
one.backupjob.allocate A:ss Allocates a new Backup Job
one.backupjob.backup A:si Execute Backup Job
one.backupjob.cancel A:si Cancel Backup Job execution
one.backupjob.chmod A:siiiiiiiiii Changes permission bits of a Backup Job
one.backupjob.chown A:siii Changes ownership of a Backup Job
one.backupjob.delete A:si Deletes a Backup Job
one.backupjob.info A:sib Returns Backup Job information
one.backupjob.lock A:siib Lock a Backup Job
one.backupjob.priority A:sii Set Backup Job priority
one.backupjob.rename A:sis Renames a Backup Job
one.backupjob.retry A:si Retry Backup Job
one.backupjob.schedadd A:sis Create Scheduled Action
one.backupjob.scheddelete A:sii Delete Scheduled Action
one.backupjob.schedupdate A:siis pdate Scheduled Action
one.backupjob.unlock A:si Unlock a Backup Job
one.backupjob.update A:sisi Updates a Backup Job template
one.backupjobpool.info A:siii Returns the Backup Job pool
one.cluster.adddatastore A:sii Adds a datastore to the cluster
one.cluster.addhost A:sii Adds a host to the cluster
one.cluster.addvnet A:sii Adds a virtual network to the cluster
one.cluster.allocate A:ssssi Allocates a new Cluster
one.cluster.deldatastore A:sii Deletes a datastore from its cluster
one.cluster.delete A:si Deletes a Cluster
one.cluster.delhost A:sii Deletes a host from its cluster
one.cluster.delvnet A:sii Deletes a virtual network from its cluster
one.cluster.info A:sib Returns Cluster information
one.cluster.optimize A:si Create an optimization plan for Cluster
one.cluster.plandelete A:si Deletes an optimization plan
one.cluster.planexecute A:si Start execution of optimization plan
one.cluster.rename A:sis Renames a Cluster
one.cluster.update A:sisi Updates a Cluster template
one.clusterpool.info A:s Returns the Cluster pool
one.datastore.allocate A:ssi Allocates a new Datastore
one.datastore.chmod A:siiiiiiiiii Changes permission bits of a Image
one.datastore.chown A:siii Changes ownership of a Datastore
one.datastore.delete A:si Deletes a Datastore
one.datastore.enable A:sib Enables or disables an Datastore
one.datastore.info A:sib Returns Datastore information
one.datastore.rename A:sis Renames a Datastore
one.datastore.update A:sisi Updates a Datastore
one.datastorepool.info A:s Returns the Datastore pool
one.document.allocate A:ssi Allocates a new generic document
one.document.chmod A:siiiiiiiiii Changes permission bits of a generic document
one.document.chown A:siii Changes ownership of a generic document
one.document.clone A:sis Clone existing document
one.document.delete A:si Deletes a generic document
one.document.info A:sib Returns generic document information
one.document.lock A:siib Tries to acquire the object's lock
one.document.rename A:sis Renames a generic document
one.document.unlock A:si Unlocks the object
one.document.update A:sisi Updates a document template
one.documentpool.info A:siiii Returns the generic document pool
one.group.addadmin A:sii Adds a user to the group admin set
one.group.allocate A:ss Allocates a new group
one.group.deladmin A:sii Removes a user from the group admin set
one.group.delete A:si Deletes a group
one.group.info A:sib Returns group information
one.group.quota A:sis Sets group quota limits
one.group.update A:sisi Updates a group template
one.group.vlan A:sis Sets group VLAN rules
one.grouppool.info A:s Returns the group pool
one.groupquota.info A:s Returns the default group quota limits
one.groupquota.update A:ss Updates the default group quota limits
one.hook.allocate A:ss Allocates a new hook
one.hook.delete A:si Deletes a hook
one.hook.info A:sib Returns hook information
one.hook.lock A:siib Lock a Hook
one.hook.rename A:sis Renames a hook
one.hook.retry A:sii Retry a hook execution
one.hook.unlock A:si Unlock a Hook
one.hook.update A:sisi Updates a hook template
one.hooklog.info A:siiii Returns the hook pool log info
one.hookpool.info A:siii Returns the hook pool
one.host.allocate A:ssssi Allocates a new host
one.host.delete A:si Deletes a host
one.host.info A:sib Returns host information
one.host.monitoring A:si Returns the host monitoring records
one.host.rename A:sis Renames a host
one.host.status A:sii Sets the status of the host
one.host.update A:sisi Updates a host template
one.hostpool.info A:s Returns the host pool
one.hostpool.monitoring A:s Returns the host monitoring records
one.image.allocate A:ssib Allocates a new Image
one.image.chmod A:siiiiiiiiii Changes permission bits of a Image
one.image.chown A:siii Changes ownership of a Image
one.image.chtype A:sis Changes the type of an Image
one.image.clone A:sisi Clones an existing Image
one.image.delete A:sib Deletes a Image
one.image.enable A:sib Enables or disables an Image
one.image.info A:sib Returns Image information
one.image.lock A:siib Lock an Image
one.image.persistent A:sib Makes an image persistent or non-persistent
one.image.rename A:sis Renames a Image
one.image.restore A:siis Restores a VM backup
one.image.snapshotdelete A:sii Deletes a snapshot from an Image
one.image.snapshotflatten A:sii Flattens the selected Image snapshot
one.image.snapshotrevert A:sii Reverts Image to a previous snapshot
one.image.unlock A:si Unlock an Image
one.image.update A:sisi Updates a Image
one.imagepool.info A:siii Returns the Image pool
one.market.allocate A:ss Allocates a new MarketPlace
one.market.allocatedb A:ss Allocates a new MarketPlace from its template representation
one.market.chmod A:siiiiiiiiii Changes permission bits of a MarketPlace
one.market.chown A:siii Changes ownership of a MarketPlace
one.market.delete A:si Deletes a MarketPlace
one.market.enable A:sii Enable or disable MarketPlace
one.market.info A:sib Returns MarketPlace information
one.market.rename A:sis Renames a MarketPlace
one.market.update A:sisi Updates a MarketPlace template
one.market.updatedb A:sis Updates the DB object from a XML document
one.marketapp.allocate A:ss Allocates a new MarketPlaceApp
one.marketapp.allocatedb A:ss Allocates a new MarketPlaceApp from its template representation
one.marketapp.chmod A:siiiiiiiiii Changes permission bits of a MarketPlaceApp
one.marketapp.chown A:siii Changes ownership of a MarketPlaceApp
one.marketapp.delete A:si Deletes a MarketPlaceApp
one.marketapp.dropdb A:si Drops the MarketPlaceApp object from DB
one.marketapp.enable A:sii Enable or disable MarketPlaceApp
one.marketapp.info A:si Returns MarketPlaceApp information
one.marketapp.lock A:siib Lock a MarketPlaceApp
one.marketapp.rename A:sis Renames a MarketPlaceApp
one.marketapp.unlock A:si Unlock a MarektPlaceApp
one.marketapp.update A:sisi Updates a MarketPlaceApp template
one.marketapp.updatedb A:sis Updates the DB object from a XML document
one.marketapppool.info A:s Returns the MarketPlaceApp pool
one.marketpool.info A:s Returns the MarketPlace pool
one.secgroup.allocate A:ss Allocates a new security group
one.secgroup.chmod A:siiiiiiiiii Changes permission bits of a security group
one.secgroup.chown A:siii Changes ownership of a security group
one.secgroup.clone A:sis Clone a security group
one.secgroup.commit A:sib Commit security group changes to VMs
one.secgroup.delete A:si Deletes a security group
one.secgroup.info A:sib Returns security group information
one.secgroup.rename A:sis Renames a security group
one.secgroup.update A:sisi Updates a security group template
one.secgrouppool.info A:siii Returns the security group pool
one.system.config A:s Returns the OpenNebula configuration
one.system.sql A:ssb Executes and replicates SQL commands on the DB backend
one.system.sqlquery A:ss Executes SQL queries on the DB backend
one.system.version A:s Returns the OpenNebula version
one.template.allocate A:ss Allocates a new Template
one.template.chmod A:siiiiiiiiiib Changes permission bits of a Template
one.template.chown A:siii Changes ownership of a Template
one.template.clone A:sisb Clone a Virtual Machine template
one.template.delete A:si Deletes a Template
one.template.info A:sibb Returns Template information
one.template.instantiate A:sisbs Instantiates a new Virtual Machine using a template
one.template.lock A:siib Lock a Template
one.template.rename A:sis Renames a Template
one.template.unlock A:si Unlock a MarektPlaceApp
one.template.update A:sisi Updates a Template
one.templatepool.info A:siii Returns the Template pool
one.user.addgroup A:sii Adds the user to a secondary group
one.user.allocate A:ssssA Allocates a new user
one.user.chauth A:siss Changes user's authentication driver
one.user.chgrp A:sii Changes ownership of a user
one.user.delete A:si Deletes a user
one.user.delgroup A:sii Deletes the user from a secondary group
one.user.enable A:sii Enable or disable user
one.user.info A:sib Returns user information
one.user.login A:sssii Generates or sets a login token
one.user.passwd A:sis Changes user's password
one.user.quota A:sis Sets user quota limits
one.user.update A:sisi Updates a user template
one.userpool.info A:s Returns the user pool
one.userquota.info A:s Returns the default user quota limits
one.userquota.update A:ss Updates the default user quota limits
one.vdc.addcluster A:siii Adds a cluster to the VDC
one.vdc.adddatastore A:siii Adds a datastore to the VDC
one.vdc.addgroup A:sii Adds a group to the VDC
one.vdc.addhost A:siii Adds a host to the VDC
one.vdc.addvnet A:siii Adds a vnet to the VDC
one.vdc.allocate A:ss Allocates a new VDC
one.vdc.delcluster A:siii Deletes a cluster from the VDC
one.vdc.deldatastore A:siii Deletes a datastore from the VDC
one.vdc.delete A:si Deletes a VDC
one.vdc.delgroup A:sii Deletes a group from the VDC
one.vdc.delhost A:siii Deletes a host from the VDC
one.vdc.delvnet A:siii Deletes a vnet from the VDC
one.vdc.info A:sib Returns VDC information
one.vdc.rename A:sis Renames a VDC
one.vdc.update A:sisi Updates a VDC template
one.vdcpool.info A:s Returns the VDC pool
one.vm.action A:ssi Performs an action on a Virtual Machine
one.vm.allocate A:ss Allocates a new Virtual Machine
one.vm.attach A:sis Attach a disk to a Virtual Machine
one.vm.attachnic A:sis Attach a NIC to a Virtual Machine
one.vm.attachpci A:sis Attach a PCI device to a Virtual Machine
one.vm.attachsg A:siii Attach a Security Group to a Virtual Machine
one.vm.backup A:siib Creates a new backup image for a Virtual Machine
one.vm.backupcancel A:si Cancel a backup operation for a Virtual Machine
one.vm.cancelexec A:si Cancel the execution of the command being executed in a Virtual Machine
one.vm.chmod A:siiiiiiiiii Changes permission bits of a Virtual Machine
one.vm.chown A:siii Changes ownership of a Virtual Machine
one.vm.deploy A:siibis Deploy a Virtual Machine
one.vm.detach A:sii Detach a disk from a Virtual Machine
one.vm.detachnic A:sii Detach a NIC from a Virtual Machine
one.vm.detachpci A:sii Detach a PCI device from a Virtual Machine
one.vm.detachsg A:siii Detach a Security Group from a Virtual Machine
one.vm.diskresize A:siis Resize a disk of a Virtual Machine
one.vm.disksaveas A:siissi Save a Virtual Machine Disk
one.vm.disksnapshotcreate A:siis Create a snapshot of a Virtual Machine Disk
one.vm.disksnapshotdelete A:siii Delete a snapshot of a Virtual Machine Disk
one.vm.disksnapshotrename A:siiis Rename a snapshot of a Virtual Machine Disk
one.vm.disksnapshotrevert A:sii Revert a Virtual Machine Disk to a snapshot
one.vm.exec A:siss Execute a command in a Virtual Machine
one.vm.info A:sib Returns Virtual Machine information
one.vm.lock A:siib Lock a Virtual Machine
one.vm.migrate A:siibbii Migrate a Virtual Machine
one.vm.monitoring A:si Monitor a Virtual Machine
one.vm.recover A:sii Recover a Virtual Machine
one.vm.rename A:sis Renames a Virtual Machine
one.vm.resize A:siis Resize a Virtual Machine
one.vm.restore A:siiii Restore a Virtual Machine from a backup
one.vm.retryexec A:si Retry to execute the last command executed in a Virtual Machine
one.vm.schedadd A:sis Add a scheduled action to a Virtual Machine
one.vm.scheddelete A:sii Delete a scheduled action for a Virtual Machine
one.vm.schedupdate A:siis Update a scheduled action for a Virtual Machine
one.vm.snapshotcreate A:sis Create a snapshot of a Virtual Machine
one.vm.snapshotdelete A:sii Delete a snapshot of a Virtual Machine
one.vm.snapshotrevert A:sii Revert a Virtual Machine to a snapshot
one.vm.unlock A:si Unlock a Virtual Machine
one.vm.update A:sisi Updates a Virtual Machine
one.vm.updateconf A:sis Update the configuration of a Virtual Machine
one.vm.updatenic A:siis Update NIC attributes, propagate the changes to host
one.vm.vmgroupadd A:siis Add a Virtual Machine to a VM Group
one.vm.vmgroupdel A:si Delete a Virtual Machine from a VM Group
one.vmgroup.allocate A:ss Allocates a new vm group
one.vmgroup.chmod A:siiiiiiiiii Changes permission bits of a vm group
one.vmgroup.chown A:siii Changes ownership of a vm group
one.vmgroup.delete A:si Deletes a vm group
one.vmgroup.info A:sib Returns vm group information
one.vmgroup.lock A:siib Lock a VMGroup
one.vmgroup.rename A:sis Renames a vm group
one.vmgroup.roleadd A:sis Add new role to VMGroup
one.vmgroup.roledelete A:sii Delete role from VMGroup
one.vmgroup.roleupdate A:siis Update VMGroup role
one.vmgroup.unlock A:si Unlock a VMGroup
one.vmgroup.update A:sisi Updates a vm group template
one.vmgrouppool.info A:siii Returns the vm group pool
one.vmpool.accounting A:siii Returns the Virtual Machine history records
one.vmpool.calculateshowback A:siiiii Processes all the history records, and stores the monthly cost for each VM
one.vmpool.info A:siiiis Returns the Virtual Machine pool
one.vmpool.infoextended A:siiiis Returns the Virtual Machine pool in extended format
one.vmpool.infoset A:ssb Returns the Virtual Machine pool
one.vmpool.monitoring A:sii Returns the Virtual Machine monitoring records
one.vmpool.showback A:siiiii Returns the Virtual Machine showback records
one.vn.add_ar A:sis Adds Address Ranges to a Virtual Network
one.vn.allocate A:si Allocates a new VirtualNetwork
one.vn.chmod A:siiiiiiiiii Changes permission bits of a VirtualNetwork
one.vn.chown A:siii Changes ownership of a VirtualNetwork
one.vn.delete A:si Deletes a VirtualNetwork
one.vn.free_ar A:sii Frees a reserved Address Range from a Virtual Network
one.vn.hold A:sis Holds a Virtual Network Lease as used
one.vn.info A:sib Returns VirtualNetwork information
one.vn.lock A:siib Lock an VirtualNetwork
one.vn.recover A:sii Recover Virtual Network from ERROR or LOCKED state
one.vn.release A:sis Releases a Virtual Network Lease on hold
one.vn.rename A:sis Renames a VirtualNetwork
one.vn.reserve A:sis Reserve network addresses
one.vn.rm_ar A:siib Removes an Address Range from a Virtual Network
one.vn.unlock A:si Unlock an VirtualNetwork
one.vn.update A:sisi Updates a VirtualNetwork
one.vn.update_ar A:sis Updates Address Ranges to a Virtual Network
one.vnpool.info A:siii Returns the VirtualNetwork pool
one.vntemplate.allocate A:ss Allocates a new VNTemplate
one.vntemplate.chmod A:siiiiiiiiii Changes permission bits of a VNTemplate
one.vntemplate.chown A:siii Changes ownership of a VNTemplate
one.vntemplate.clone A:sis Clone a VNTemplate
one.vntemplate.delete A:si Deletes a VNTemplate
one.vntemplate.info A:sib Returns VNTemplate information
one.vntemplate.instantiate A:siss Instantiate a VNTemplate
one.vntemplate.lock A:siib Lock a VNTemplate
one.vntemplate.rename A:sis Renames a VNTemplate
one.vntemplate.unlock A:si Unlock a VNTemplate
one.vntemplate.update A:sisi Updates a VNTemplate
one.vntemplatepool.info A:s Returns the VNTemplate pool
one.vrouter.allocate A:ss Allocates a new virtual router
one.vrouter.attachnic A:sis Attaches a new NIC to the virtual router, and its virtual machines
one.vrouter.chmod A:siiiiiiiiii Changes permission bits of a virtual router
one.vrouter.chown A:siii Changes ownership of a virtual router
one.vrouter.delete A:si Deletes a virtual router
one.vrouter.detachnic A:sii Detaches a NIC from a virtual router, and its virtual machines
one.vrouter.info A:sib Returns virtual router information
one.vrouter.instantiate A:siiisbs Instantiates a new virtual machine associated to a virtual router
one.vrouter.lock A:siib Lock a VirtualRouter
one.vrouter.rename A:sis Renames a virtual router
one.vrouter.unlock A:si Unlock a VirtualRouter
one.vrouter.update A:sisi Updates a virtual router template
one.vrouterpool.info A:siii Returns the virtual router pool
one.zone.addserver A:sis Add a server to zone
one.zone.allocate A:ss Allocates a new zone
one.zone.delete A:si Deletes a zone
one.zone.delserver A:sii Delete a server from zone
one.zone.enable A:sii Enable or disable zone
one.zone.fedreplicate A:sis Replicate a fed log record
one.zone.info A:sib Returns zone information
one.zone.raftstatus A:s Returns Raft status
one.zone.rename A:sis Renames a zone
one.zone.replicate A:siiiiiiis Replicate a log record
one.zone.resetserver A:sis Reset server log index
one.zone.update A:sisi Updates a zone template
one.zone.updatedb A:sis Updates the DB object from a XML document
one.zone.voterequest A:siiii Request vote from a candidate
one.zonepool.info A:s Returns the zone pool
"""  # noqa: E501
ONED_METHODS: dict[str, tuple[str, str]] = {
    name: (signature, help_text)
    for name, signature, help_text in (
        line.split(" ", 2) for line in _ONED_INTROSPECTION.strip().splitlines()
    )
}


@dataclass(frozen=True)
class Method:
    """One registered ``one.*`` method."""

    name: str
    kinds: str
    required: int
    handler: Handler
    help: str
    authenticate: bool = True
    returns: str = "A"

    @property
    def signature(self) -> str:
        """oned's signature string (not enforced; some differ from what oned reads)."""
        known = ONED_METHODS.get(self.name)
        if known is not None:
            return known[0]
        return f"{self.returns}:s" + "".join(_SIG[k] for k in self.kinds)

    @property
    def help_text(self) -> str:
        """oned's help string of the method (our docstring for methods oned lacks)."""
        known = ONED_METHODS.get(self.name)
        return known[1] if known is not None else self.help

    def coerce(self, params: tuple[Any, ...]) -> list[Any]:
        """Type-check the parameters after the session; extra ones are ignored."""
        if len(params) < self.required:
            raise not_enough_parameters()
        out: list[Any] = []
        for kind, value in zip(self.kinds, params, strict=False):
            out.append(_check(kind, value))
        return out


def _check(kind: str, value: Any) -> Any:
    ok: bool
    if kind == "*":
        return value
    if kind == "i":
        ok = type(value) is int and INT32_MIN <= value <= INT32_MAX
    elif kind == "I":
        ok = type(value) in (int, I8) and not isinstance(value, bool)
    elif kind == "s":
        ok = isinstance(value, str)
    elif kind == "b":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, list)
    if not ok:
        raise RpcFault(-501, _TYPE_FAULT[kind])
    return int(value) if kind == "I" else value


class Registry:
    """All methods, by name."""

    def __init__(self) -> None:
        self.methods: dict[str, Method] = {}

    def add(self, method: Method) -> None:
        if method.name in self.methods:
            raise ValueError(f"duplicate method {method.name}")
        self.methods[method.name] = method

    def get(self, name: str) -> Method | None:
        return self.methods.get(name)


_DECLARED: list[Method] = []


def rpc(
    name: str,
    kinds: str = "",
    required: int | None = None,
    help: str = "",
    authenticate: bool = True,
) -> Callable[[Handler], Handler]:
    """Declare a handler ``async def h(core, call, *params)`` for method ``name``."""

    def wrap(fn: Handler) -> Handler:
        _DECLARED.append(
            Method(
                name,
                kinds,
                len(kinds) if required is None else required,
                fn,
                help or (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else help,
                authenticate,
            )
        )
        return fn

    return wrap


def declared() -> list[Method]:
    return list(_DECLARED)


def call_handler(method: Method, core: Core, call: Call, args: list[Any]) -> Awaitable[Any]:
    return method.handler(core, call, *args)
