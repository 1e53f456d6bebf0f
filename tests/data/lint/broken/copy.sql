-- psql habits: neither COPY nor \i reach the server through sqlfix.
COPY users (id, email) FROM stdin;
\i other.sql
