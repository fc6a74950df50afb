-- Demo data: 2,000 customers, 50 products, 5,000 orders with 1 to 3 lines each.
INSERT INTO shop.customers (email, name, created_at)
SELECT format('customer%s@example.com', i),
       format('Customer %s', i),
       timestamptz '2024-01-01' + i * interval '1 hour'
  FROM generate_series(1, 2000) AS i;

INSERT INTO shop.products (sku, name, price_cents)
SELECT format('SKU-%s', lpad(i::text, 4, '0')), format('Product %s', i), 100 + (i * 137) % 9900
  FROM generate_series(1, 50) AS i;

INSERT INTO shop.orders (customer_id, status, created_at)
SELECT 1 + (i * 7919) % 2000,
       CASE WHEN (i / 7) % 10 < 6 THEN 'shipped'
            WHEN (i / 7) % 10 < 8 THEN 'paid'
            WHEN (i / 7) % 10 < 9 THEN 'open'
            ELSE 'cancelled' END,
       timestamptz '2024-03-01' + i * interval '17 minutes'
  FROM generate_series(1, 5000) AS i;

-- The trigger from 0003 fills orders.total_cents as the lines go in.
INSERT INTO shop.order_lines (order_id, product_id, quantity, unit_price_cents)
SELECT o.id, p.id, 1 + (o.id + n) % 3, p.price_cents
  FROM shop.orders o
 CROSS JOIN generate_series(0, 2) AS n
  JOIN shop.products p ON p.id = 1 + (o.id * 31 + n * 17) % 50
 WHERE n <= o.id % 3;
