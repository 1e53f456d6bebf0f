-- requires: cycle_a.sql
INSERT INTO users (id) VALUES (11);
