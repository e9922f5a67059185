-- Provider-specific facts about a process that have no column of their own (Taktikal's Meta:
-- pdfUrl, pdfFieldData). Later events add keys; a key's latest value wins.
ALTER TABLE signing_processes ADD COLUMN metadata JSONB NOT NULL DEFAULT '{}'::jsonb;
