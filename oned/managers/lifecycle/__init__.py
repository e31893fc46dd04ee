"""LifeCycleManager: the LCM states of a VM and the driver-reply callbacks (``src/lcm``)."""
