-- pgwarden:allow-destructive
ALTER TABLE shop.customers DROP COLUMN tier;
DROP TYPE shop.customer_tier;
