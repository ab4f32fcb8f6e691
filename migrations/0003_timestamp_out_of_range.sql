-- A record whose Kafka timestamp PostgreSQL cannot store (before 4714 BC or after 294276 AD)
-- is written with a null timestamp and this flag, so that a null from a bad producer clock can
-- be told apart from a record that had no timestamp at all.
ALTER TABLE enriched_orders ADD COLUMN source_timestamp_out_of_range boolean NOT NULL DEFAULT false;
ALTER TABLE dead_letters ADD COLUMN source_timestamp_out_of_range boolean NOT NULL DEFAULT false;
