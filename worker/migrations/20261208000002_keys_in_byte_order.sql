-- Issue 32: every key column compares its bytes. Under the database's collation (C.UTF-8 here,
-- often en_US.UTF-8), each comparison in an index copied both strings and called strcoll: the
-- text comparisons were 8 % of PostgreSQL's CPU while the worker drained (perf). These columns
-- hold identifiers and hashes, never prose: byte order is the only order they need, and the
-- one the worker already sorts rows by (for lock order) before it writes them. Byte order also
-- does not change with the C library, so these indexes cannot be corrupted by an operating
-- system upgrade that changes a locale's collation.
--
-- Changing a column's collation rewrites no table, but rebuilds the indexes on the column once,
-- under an exclusive lock: 3.4 s per million rows of an activity-shaped table (docs/worker.md).
ALTER TABLE webhook_events
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN event_id TYPE text COLLATE "C";
ALTER TABLE signature_uses
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN signature_id TYPE text COLLATE "C";
ALTER TABLE signing_processes
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN process_key TYPE text COLLATE "C";
ALTER TABLE signees
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN process_key TYPE text COLLATE "C",
    ALTER COLUMN signee_key TYPE text COLLATE "C";
ALTER TABLE activity
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN process_key TYPE text COLLATE "C",
    ALTER COLUMN entry_key TYPE text COLLATE "C";
ALTER TABLE stored_documents
    ALTER COLUMN sha256 TYPE text COLLATE "C";
ALTER TABLE documents
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN process_key TYPE text COLLATE "C",
    ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN file_name TYPE text COLLATE "C",
    ALTER COLUMN content_key TYPE text COLLATE "C",
    ALTER COLUMN sha256 TYPE text COLLATE "C";
