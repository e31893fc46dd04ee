"""Our Hook Execution Manager (``oned-hem``), the counterpart of OpenNebula's onehem-server.

It loads the hooks with ``one.hookpool.info``, subscribes to the hook driver's ZeroMQ bus
with each hook's key, runs the hooks' commands (locally or over ssh) with a bounded
concurrency and sends every result back to the driver's REP socket in onehem-server's
format (``<rc> <hook_id> <b64 result>``).
"""

__all__: list[str] = []
