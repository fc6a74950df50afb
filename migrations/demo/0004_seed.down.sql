-- pgwarden:allow-destructive
-- Removes every row, not only the seeded ones: the demo schema holds nothing else.
TRUNCATE shop.order_lines, shop.orders, shop.products, shop.customers RESTART IDENTITY;
