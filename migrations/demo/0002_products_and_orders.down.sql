-- pgwarden:allow-destructive
DROP TABLE shop.order_lines;
DROP TABLE shop.orders;
DROP TABLE shop.products;
