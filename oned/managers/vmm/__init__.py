"""VirtualMachineManager: VMM driver actions and replies (``src/vmm``)."""
