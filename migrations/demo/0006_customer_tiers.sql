-- Customers get a loyalty tier: bronze by default, silver from 250.00 paid, gold from 450.00.
CREATE TYPE shop.customer_tier AS ENUM ('bronze', 'silver', 'gold');

ALTER TABLE shop.customers ADD COLUMN tier shop.customer_tier NOT NULL DEFAULT 'bronze';

UPDATE shop.customers c
   SET tier = CASE WHEN spent.cents >= 45000 THEN 'gold'::shop.customer_tier ELSE 'silver' END
  FROM (SELECT customer_id, sum(total_cents) AS cents
          FROM shop.orders
         WHERE status IN ('paid', 'shipped')
         GROUP BY customer_id) AS spent
 WHERE spent.customer_id = c.id
   AND spent.cents >= 25000;

-- Check the backfill before the run commits: every customer with paid orders of 250.00 or more is upgraded.
DO $check$
DECLARE
    missed integer;
BEGIN
    SELECT count(*) INTO missed
      FROM shop.customers c
     WHERE c.tier = 'bronze'
       AND (SELECT coalesce(sum(total_cents), 0) FROM shop.orders o
             WHERE o.customer_id = c.id AND o.status IN ('paid', 'shipped')) >= 25000;
    IF missed > 0 THEN
        RAISE EXCEPTION 'tier backfill missed % customers', missed;
    END IF;
END
$check$;
