-- Every finding here is silenced on its line.
CREATE TEMP TABLE scratch (id integer);  -- sqlfix: noqa: SQLF101
INSERT INTO orders (id, placed_at) VALUES (13, now());  -- sqlfix: noqa
