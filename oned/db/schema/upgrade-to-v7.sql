-- v7: hooks (OpenNebula's hook_pool and hook_log) and the queue of hook events still waiting for their result.
CREATE TABLE IF NOT EXISTS hook_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128), body MEDIUMTEXT, uid INTEGER, gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER, type INTEGER);
CREATE TABLE IF NOT EXISTS hook_log (hkid INTEGER, exeid INTEGER, timestamp INTEGER, rc INTEGER, body MEDIUMTEXT, PRIMARY KEY(hkid, exeid));
CREATE TABLE IF NOT EXISTS hook_event_queue (eid INTEGER, hkid INTEGER, message MEDIUMTEXT, PRIMARY KEY(eid, hkid));
