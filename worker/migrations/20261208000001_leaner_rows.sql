-- Issue 32: fewer index entries and WAL records per event, measured with pg_stat_statements
-- over a drain of 20,000 of the bench's events (numbers in bench/results.md).
--
-- activity, documents and webhook_events each had a BIGSERIAL primary key beside their natural
-- unique key: one more index entry and a sequence step per row, for a column used only as a
-- tie-breaker in ORDER BY. The natural unique key becomes each row's identity, also for logical
-- replication (REPLICA IDENTITY). It stays a UNIQUE constraint rather than a new primary key:
-- converting it would build the index again under an exclusive lock, minutes on a large
-- archive; dropping a key is instant. `id` itself stays, without a default and nullable, so
-- that a worker of the previous release still running during a rolling upgrade (its read API
-- orders by it) keeps working; a later release drops it.
--
-- Entries with one time were listed in the order they were written (`id`). `position`, the
-- entry's place in its delivery's log (taken, like the rest of the entry, from the event with
-- the smallest id), orders them now: the order the provider gave, whatever order events arrived in.
-- Rows written before keep position 0 and their `id`, which still orders them among themselves.
ALTER TABLE activity DROP CONSTRAINT activity_pkey;
ALTER TABLE activity ALTER COLUMN id DROP DEFAULT, ALTER COLUMN id DROP NOT NULL;
ALTER TABLE activity ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
ALTER TABLE activity REPLICA IDENTITY USING INDEX activity_source_process_key_entry_key_key;

ALTER TABLE documents DROP CONSTRAINT documents_pkey;
ALTER TABLE documents ALTER COLUMN id DROP DEFAULT, ALTER COLUMN id DROP NOT NULL;
ALTER TABLE documents REPLICA IDENTITY USING INDEX documents_source_process_key_kind_file_name_content_key_key;

ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_pkey;
ALTER TABLE webhook_events ALTER COLUMN id DROP DEFAULT, ALTER COLUMN id DROP NOT NULL;
ALTER TABLE webhook_events REPLICA IDENTITY USING INDEX webhook_events_source_event_id_key;

-- The foreign key from documents to stored_documents ran a lookup and took a KEY SHARE lock
-- on the content's row for every document row that names stored content. Many processes share
-- one content (a template sent to many signers; every event of the bench): concurrent
-- transactions then share that row lock through a MultiXact, the most expensive statement of
-- the drain. The guarantee holds by construction instead: the worker commits a content's
-- stored_documents row (after writing the content) before the transaction that names it, and
-- nothing deletes one (a test checks every named sha256 has its row).
ALTER TABLE documents DROP CONSTRAINT documents_sha256_fkey;

-- An event of a few KiB was moved out of line into the TOAST table (a second heap insert and
-- an index entry), after lz4 had tried and failed to shrink it (the body is mostly base64).
-- Rows up to a page stay inline; larger bodies are compressed and moved out as before.
ALTER TABLE webhook_events SET (toast_tuple_target = 8160);
