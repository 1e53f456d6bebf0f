INSERT INTO users (id, email, full_name, created_at)
VALUES (4, 'dee@example.com',, 'Dee', {{ now }});
