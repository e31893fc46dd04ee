"""The audit trail: one hash-chained JSON record per XML-RPC call (OpenNebula #611).

``settings`` reads ``AUDIT = [ ... ]`` from oned.conf, ``record`` builds a call's record
(secrets masked), ``writer`` appends records to ``var/audit.log`` (or syslog) with each
record carrying the hash of the previous one, ``trail`` is what the request manager
calls, and ``verify``/``cli`` check a chain (``oned-audit verify``).
"""

__all__ = ["cli", "record", "settings", "trail", "verify", "writer"]
