INSERT INTO users (id, email) VALUES (3, '{{ fake.email() }}');
