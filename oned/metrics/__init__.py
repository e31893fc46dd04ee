"""Built-in Prometheus metrics (OpenNebula's ``opennebula-exporter``, served by oned).

``settings`` reads ``METRICS = [ LISTEN_ADDRESS, PORT ]`` from oned.conf; ``text`` writes
the text exposition format; ``exporter`` renders the exporter's ``opennebula_host_*``,
``opennebula_vm_*``, ``opennebula_datastore_*`` and ``opennebula_vnet_free_lease_ratio``
families from the in-memory pools; ``services`` the ``opennebula_*_state``, HA and
backup/restore families; ``instruments`` what only the daemon sees (API calls, drivers,
the database, monitoring, hooks) in a registry of its own; ``http`` serves ``/metrics``
from the daemon's reactor.
"""

__all__ = ["exporter", "http", "instruments", "services", "settings", "text"]
