BEGIN;
INSERT INTO users (id, email) VALUES (2, 'b@example.com');
COMMIT;
