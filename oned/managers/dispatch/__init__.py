"""DispatchManager: VM actions entering the core and the DM success states (``src/dm``)."""
