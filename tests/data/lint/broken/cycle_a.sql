-- requires: cycle_b.sql
INSERT INTO users (id) VALUES (10);
