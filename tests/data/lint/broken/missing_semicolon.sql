INSERT INTO users (id, email) VALUES (6, 'fay@example.com');
INSERT INTO users (id, email) VALUES (7, 'gus@example.com')
