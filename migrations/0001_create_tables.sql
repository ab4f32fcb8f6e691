-- The lookup table: one row per customer, as in the original customers.csv.
CREATE TABLE customers (
    customer_name text NOT NULL UNIQUE,
    address       text,
    longitude     numeric,
    latitude      numeric
);

-- One row per order number: the newest record of that order (see the ordering rule in
-- src/store.rs). source_* say which Kafka record the row was written from.
CREATE TABLE enriched_orders (
    order_no         text PRIMARY KEY,
    order_date       date NOT NULL,
    region           text NOT NULL,
    customer         text NOT NULL,
    item             text NOT NULL,
    units            integer NOT NULL,
    unit_cost        numeric NOT NULL,
    total            numeric NOT NULL,
    customer_found   boolean NOT NULL,
    address          text,
    longitude        numeric,
    latitude         numeric,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    source_timestamp timestamptz,
    written_at       timestamptz NOT NULL DEFAULT now()
);

-- Records that could not be decoded, kept whole for inspection and replay.
CREATE TABLE dead_letters (
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    source_timestamp timestamptz,
    partition_key    text NOT NULL,
    reason           text NOT NULL,
    raw_key          bytea,
    raw_value        bytea,
    headers          jsonb NOT NULL DEFAULT '[]',
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);

CREATE INDEX dead_letters_dead_lettered_at ON dead_letters (dead_lettered_at);
