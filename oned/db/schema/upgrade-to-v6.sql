-- v6: the tables of VM groups, virtual routers and backup jobs (OpenNebula's vmgroup_pool, vrouter_pool and backupjob_pool).
CREATE TABLE IF NOT EXISTS vmgroup_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128), body MEDIUMTEXT, uid INTEGER, gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER, UNIQUE(name,uid));
CREATE TABLE IF NOT EXISTS vrouter_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128), body MEDIUMTEXT, uid INTEGER, gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER);
CREATE TABLE IF NOT EXISTS backupjob_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128), body MEDIUMTEXT, uid INTEGER, gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER, priority INTEGER, outdated_vms INTEGER);
