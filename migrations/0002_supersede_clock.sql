-- The ordering rule's clock (see src/plan.rs, `supersedes`): per row, the latest record
-- timestamp of the order in the partition its record came from, in epoch milliseconds. With
-- it the rule is a total order, so the final row does not depend on the order in which
-- batches commit. Rows written before it existed start from their own record's timestamp.
ALTER TABLE enriched_orders ADD COLUMN supersede_clock_ms bigint;
UPDATE enriched_orders
SET supersede_clock_ms = (extract(epoch FROM source_timestamp) * 1000)::bigint
WHERE source_timestamp IS NOT NULL;
