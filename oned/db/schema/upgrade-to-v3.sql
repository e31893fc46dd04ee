-- v3: virtual-network templates (OpenNebula's vn_template_pool).
CREATE TABLE vn_template_pool (oid INTEGER PRIMARY KEY, name VARCHAR(128), body MEDIUMTEXT, uid INTEGER, gid INTEGER, owner_u INTEGER, group_u INTEGER, other_u INTEGER)
