-- Three customers and an admin. Each row's values are keyed to its label with
-- row(), so adding or removing a user changes no other user's values.
INSERT INTO users (id, email, full_name, created_at, is_admin) VALUES
{% for label in ['alice', 'bob', 'carol'] %}
    ({{ id('users', label) }}, {{ label ~ '@example.com' }}, {{ row(label).fake.name() }},
     {{ now - timedelta(days=row(label).rng.randint(30, 900)) }}, FALSE),
{% endfor %}
    ({{ id('users', 'admin') }}, 'admin@example.com', 'Ada Admin', {{ now }}, TRUE);
