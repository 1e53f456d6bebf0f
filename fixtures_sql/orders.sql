-- requires: users.sql, products.sql
-- Alice has a paid order with two lines; Bob has an open cart.
INSERT INTO orders (id, user_id, status, placed_at, note) VALUES
    ({{ id('orders', 'alice-paid') }}, {{ id('users', 'alice') }}, 'paid',
     {{ now - timedelta(days=3) }}, {{ fake.sentence(nb_words=6) }}),
    ({{ id('orders', 'bob-cart') }}, {{ id('users', 'bob') }}, 'cart', {{ now }}, NULL);

INSERT INTO order_items (order_id, product_id, quantity, price_cents)
SELECT {{ id('orders', 'alice-paid') }}, p.id, q.quantity, p.price_cents
FROM products p
JOIN (VALUES ('SKU-KETTLE', 1), ('SKU-TEA', 3)) AS q (sku, quantity) ON q.sku = p.sku;

INSERT INTO order_items (order_id, product_id, quantity, price_cents)
SELECT {{ id('orders', 'bob-cart') }}, id, 2, price_cents FROM products WHERE sku = 'SKU-MUG';
