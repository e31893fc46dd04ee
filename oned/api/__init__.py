"""The XML-RPC API: transport (``server``), dispatch, and one module per object family."""

from oned.api.registry import Registry, declared


def build_registry() -> Registry:
    """Every ``one.*`` method of the families this daemon serves."""
    from oned.api import (  # noqa: F401 - importing registers the handlers
        acl,
        cluster,
        datastore,
        document,
        group,
        host,
        image,
        secgroup,
        system,
        user,
        vm,
        vmpool,
        vmtemplate,
        vnet,
        vntemplate,
        zone,
    )

    registry = Registry()
    for method in declared():
        registry.add(method)
    return registry


__all__ = ["build_registry"]
