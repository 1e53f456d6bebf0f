INSERT INTO products (id, sku, name, price_cents) VALUES (3, 'SKU-FREE', 'Free lunch', 100);
UPDATE products SET price_cents = 0 WHERE id = 3;
