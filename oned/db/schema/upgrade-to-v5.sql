-- v5: scheduled actions of VMs and backup jobs (OpenNebula 7's schedaction_pool; ids from pool_control).
CREATE TABLE IF NOT EXISTS schedaction_pool (oid INTEGER PRIMARY KEY, parent_id INTEGER, type VARCHAR(128), body MEDIUMTEXT, time INTEGER, done INTEGER)
