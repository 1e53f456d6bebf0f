-- The sandbox refuses the machine's clock: use `now`.
INSERT INTO orders (placed_at) VALUES ({{ now.now() }});
