"""The audit trail: one hash-chained JSON record per XML-RPC call (OpenNebula #611).

``settings`` reads ``AUDIT = [ ... ]`` from oned.conf, ``record`` builds a call's record
(secrets masked), ``trail`` is what the request manager calls: it keeps each record's raw
fields in the ``journal`` when the call ends and hands them in batches to the ``scribe``
process (``link`` is the daemon's end of it), which builds, chains (``batch``) and
appends them with ``writer`` to ``var/audit.log`` (or syslog), each record carrying the
hash of the previous one; ``verify``/``cli`` check a chain (``oned-audit verify``).
"""

__all__ = [
    "batch", "cli", "journal", "link", "record", "scribe", "settings", "trail", "verify",
    "writer",
]  # fmt: skip
