-- A fixture that creates a table: schema changes belong in the schema files.
INSERT INTO users (id, email) VALUES (1, 'a@example.com');
CREATE TABLE scratch (id integer);
