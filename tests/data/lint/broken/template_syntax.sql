{% for n in range(3) %}
INSERT INTO users (id) VALUES ({{ n }});
