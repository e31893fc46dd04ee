-- v4: monthly showback records of VMs (OpenNebula's vm_showback, written by one.vmpool.calculateshowback).
CREATE TABLE IF NOT EXISTS vm_showback (vmid INTEGER, year INTEGER, month INTEGER, body MEDIUMTEXT, PRIMARY KEY(vmid, year, month))
