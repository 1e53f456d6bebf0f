-- requires: products.sql
-- For stock-audit tests: tea gets a fresh count from this file's seeded rng,
-- and the teapot is out of stock.
UPDATE products SET stock = {{ rng.randint(50, 100) }} WHERE sku = 'SKU-TEA';
UPDATE products SET stock = 0 WHERE sku = 'SKU-TEAPOT';
