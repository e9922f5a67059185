-- The foreign keys of signees, activity and documents check signing_processes by
-- (source, process_key) for every row they insert. PostgreSQL plans that check once per
-- connection and keeps the plan; planned against an empty table, it took the time index, which
-- also starts with source, and then read every process of the source for every check (measured:
-- 479 million index tuples read for 14,000 events, the worker's drain rate falling from 640 to
-- 215 events/s as the table grew). A time index that does not start with source cannot be
-- mistaken for the key; the read API's listing (newest first, optionally by source) still
-- walks it in order.
DROP INDEX signing_processes_by_time;
CREATE INDEX signing_processes_by_update ON signing_processes (updated_at);
