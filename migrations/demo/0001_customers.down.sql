-- pgwarden:allow-destructive
DROP TABLE shop.customers;
DROP SCHEMA shop;
