-- Customers of the demo shop.
CREATE SCHEMA IF NOT EXISTS shop;

CREATE TABLE shop.customers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_email_key UNIQUE (email),
    CONSTRAINT customers_email_check CHECK (position('@' IN email) > 1)
);

COMMENT ON TABLE shop.customers IS 'People who can place orders; one row per e-mail address.';
