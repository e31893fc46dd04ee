"""IPAM manager: VNET_CREATE/VNET_DELETE and address-range calls over the IPAM driver
(mirrors ``src/ipamm``), plus the NIC seam VMs use to take and give back leases."""
