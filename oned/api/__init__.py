"""The XML-RPC API: transport (``server``), dispatch, and one module per object family."""

from oned.api.registry import Registry, declared


def build_registry() -> Registry:
    """Every ``one.*`` method of the families this daemon serves."""
    from oned.api import (  # noqa: F401 - importing registers the handlers
        acl,
        backupjob,
        cluster,
        cluster_plan,
        datastore,
        document,
        group,
        hook,
        host,
        image,
        market,
        marketapp,
        secgroup,
        system,
        user,
        vdc,
        vm,
        vm_backup,
        vm_disk,
        vm_migrate,
        vm_nic,
        vm_sched,
        vm_system,
        vmgroup,
        vmpool,
        vmtemplate,
        vnet,
        vntemplate,
        vrouter,
        zone,
    )

    registry = Registry()
    for method in declared():
        registry.add(method)
    return registry


__all__ = ["build_registry"]
