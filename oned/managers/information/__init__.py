"""Host monitoring through IM_MAD (mirrors ``src/im`` and monitord's ``HostMonitorManager``)."""
