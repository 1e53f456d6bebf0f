-- A small catalogue. Prices and stock come from this file's seeded rng.
INSERT INTO products (id, sku, name, price_cents, stock) VALUES
{% for label, name in [('kettle', 'Electric kettle'), ('mug', 'Stoneware mug'),
                       ('teapot', 'Cast-iron teapot'), ('tea', 'Loose-leaf tea, 250 g')] %}
    ({{ id('products', label) }}, {{ 'SKU-' ~ label | upper }}, {{ name }},
     {{ rng.randint(300, 9000) }}, {{ rng.randint(0, 40) }}){% if not loop.last %},{% endif %}
{% endfor %};
