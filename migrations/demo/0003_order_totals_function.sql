-- Keep orders.total_cents equal to the sum of its lines; a trigger recomputes it on every change.
CREATE FUNCTION shop.recompute_order_total() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    changed_order bigint;
BEGIN
    -- On DELETE only OLD exists; on INSERT only NEW; on UPDATE the order id may not change.
    IF TG_OP = 'DELETE' THEN
        changed_order := OLD.order_id;
    ELSE
        changed_order := NEW.order_id;
    END IF;

    UPDATE shop.orders o
       SET total_cents = coalesce((
               SELECT sum(l.quantity * l.unit_price_cents)
                 FROM shop.order_lines l
                WHERE l.order_id = changed_order), 0)
     WHERE o.id = changed_order;

    RETURN NULL;  -- an AFTER trigger's result is ignored; the semicolons here stay inside the body
END;
$fn$;

CREATE TRIGGER order_lines_total
AFTER INSERT OR UPDATE OR DELETE ON shop.order_lines
FOR EACH ROW EXECUTE FUNCTION shop.recompute_order_total();
