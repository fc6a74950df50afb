-- pgwarden:no-transaction
DROP INDEX CONCURRENTLY shop.orders_created_at_idx;
