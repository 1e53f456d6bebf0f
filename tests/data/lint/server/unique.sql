-- requires: good.sql
-- ann's email again, under another id.
INSERT INTO users (id, email, full_name, created_at)
VALUES (2, 'ann@example.com', 'Ann Again', {{ now }});
