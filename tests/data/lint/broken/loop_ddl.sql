-- requires: users.sql
-- The DROP comes out of the loop three times: it is one finding, on line 6.
{% for n in range(3) %}
INSERT INTO orders (id, user_id) VALUES ({{ id('orders', 'o' ~ n) }}, {{ id('users', 'alice') }});
{% if n > 0 %}
    DROP TABLE order_items;
{% endif %}
{% endfor %}
