-- Loads cleanly: one user.
INSERT INTO users (id, email, full_name, created_at) VALUES
    ({{ id('users', 'ann') }}, 'ann@example.com', {{ fake.name() }}, {{ now }});
