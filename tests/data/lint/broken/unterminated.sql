INSERT INTO users (id, email) VALUES (4, 'dan@example.com);
