DROP TRIGGER order_lines_total ON shop.order_lines;
DROP FUNCTION shop.recompute_order_total();
