INSERT INTO orders (id, placed_at, note) VALUES
    (8, now(), {{ fake.sentence() }}),
    (9, {{ now - timedelta(days=1) }}, NULL);
