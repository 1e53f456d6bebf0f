{% for label in ['bo', 'cy'] %}
INSERT INTO users (id, email, full_name, created_at)
VALUES ({{ id('users', label) }}, {{ label ~ '@example.com' }}, {{ none if label == 'cy' else 'Bo' }}, {{ now }});
{% endfor %}
