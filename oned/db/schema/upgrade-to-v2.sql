-- v2: monitoring samples of hosts and VMs (OpenNebula's host_monitoring and vm_monitoring).
CREATE TABLE host_monitoring (hid INTEGER, last_mon_time INTEGER, body MEDIUMTEXT, PRIMARY KEY(hid, last_mon_time));
CREATE TABLE vm_monitoring (vmid INTEGER, last_poll INTEGER, body MEDIUMTEXT, PRIMARY KEY(vmid, last_poll))
