-- An order for a user that no fixture inserts.
INSERT INTO orders (id, user_id, status, placed_at)
VALUES (1, {{ id('users', 'nobody') }}, 'paid', {{ now }});
