-- v3: virtual-network templates (OpenNebula's vn_template_pool).
CREATE TABLE vn_template_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128), body MEDIUMTEXT, uid INTEGER, gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER);
-- Lease changes committed between two writes of a network body (replayed at load).
CREATE TABLE network_lease_journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, oid INTEGER, ar_id INTEGER, idx INTEGER, owner INTEGER, next_index INTEGER);
CREATE TRIGGER network_body_saved AFTER UPDATE OF body ON network_pool BEGIN DELETE FROM network_lease_journal WHERE oid = NEW.oid; END;
CREATE TRIGGER network_dropped AFTER DELETE ON network_pool BEGIN DELETE FROM network_lease_journal WHERE oid = OLD.oid; END
