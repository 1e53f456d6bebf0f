-- requires: users.sql, customers.sql
INSERT INTO orders (id, user_id) VALUES (1, {{ id('users', 'alice') }});
