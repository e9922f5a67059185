-- The document API serves a content only when a committed document row references it.
CREATE INDEX documents_by_sha256 ON documents (sha256) WHERE sha256 IS NOT NULL;
