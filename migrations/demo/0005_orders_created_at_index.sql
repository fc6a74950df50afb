-- pgwarden:no-transaction
-- Build the index without blocking writes; CONCURRENTLY cannot run inside a transaction block.
CREATE INDEX CONCURRENTLY orders_created_at_idx ON shop.orders (created_at);
