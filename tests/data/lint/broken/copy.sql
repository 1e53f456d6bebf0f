-- psql habits: neither COPY from a file nor \i reach the server through sqlfix.
COPY users (id, email) FROM '/tmp/users.csv';
\i other.sql
