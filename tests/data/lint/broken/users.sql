INSERT INTO users (id, email) VALUES ({{ id('users', 'alice') }}, 'alice@example.com');
