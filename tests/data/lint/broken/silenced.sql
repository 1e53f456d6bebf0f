-- Warnings are silenced on their line; errors the loader enforces are not.
CREATE TEMP TABLE scratch (id integer);  -- sqlfix: noqa: SQLF101
INSERT INTO orders (id, placed_at) VALUES (13, now());  -- sqlfix: noqa
