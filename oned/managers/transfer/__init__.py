"""TransferManager: transfer scripts and TM driver replies (``src/tm``)."""
