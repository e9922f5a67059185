-- Issue 30: where a downloaded document came from. `fetched_from` is the path under the
-- source's `api.base_url` the worker downloaded it from, `fetched_at` when; with `sha256`, the
-- document's provenance. Both NULL for content the webhook carried, and for references.
ALTER TABLE documents
    ADD COLUMN fetched_from TEXT,
    ADD COLUMN fetched_at TIMESTAMPTZ;
