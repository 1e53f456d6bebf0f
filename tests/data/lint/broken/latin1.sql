-- Saved as Latin-1 by an old editor: café.
INSERT INTO users (id) VALUES (12);
