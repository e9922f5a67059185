-- 200,000 processes over 5 sources and 90 days; per process 1 signee, 3 activity entries,
-- 2 documents, 2 raw events.
INSERT INTO signing_processes (source, process_key, provider, status, status_rank, created_at, updated_at, status_changed_at)
SELECT (ARRAY['acme','bench','fr','uk','zz'])[1 + i % 5], 'sp' || md5(i::text), 'taktikal', 'completed', 5,
       now() - (i % 129600) * interval '1 minute', now() - (i % 129600) * interval '1 minute' + interval '1 hour',
       now() - (i % 129600) * interval '1 minute'
FROM generate_series(1, 200000) i;
INSERT INTO signees (source, process_key, signee_key, name, signed, created_at, updated_at)
SELECT source, process_key, 'si' || md5(process_key), 'Test User', true, created_at, updated_at FROM signing_processes;
INSERT INTO activity (source, process_key, entry_key, status, description, created_at, created_by, event_id)
SELECT p.source, p.process_key, e.k, e.k, 'd', p.created_at + e.n * interval '10 minutes', 'Taktikal', md5(p.process_key || e.k)
FROM signing_processes p, (VALUES ('Created', 0), ('SigneeSigned:si', 1), ('Completed', 2)) e(k, n);
INSERT INTO stored_documents (sha256, size, content_type)
SELECT encode(sha256(process_key::bytea), 'hex'), 90000, 'application/pdf' FROM signing_processes;
INSERT INTO documents (source, process_key, kind, file_name, content_key, sha256, size, event_id)
SELECT source, process_key, 'signed', 'signed.pdf', encode(sha256(process_key::bytea), 'hex'), encode(sha256(process_key::bytea), 'hex'), 90000, 'e'
FROM signing_processes;
INSERT INTO documents (source, process_key, kind, file_name, content_key, url, event_id)
SELECT source, process_key, 'reference', 'pep.pdf', 'url:https://x/' || process_key, 'https://x/' || process_key, 'e'
FROM signing_processes;
INSERT INTO webhook_events (source, provider, event_id, event_type, received_at, body, body_sha256, headers)
SELECT p.source, 'taktikal', md5(p.process_key || n), 'AllSigned', p.created_at + n * interval '5 minutes',
       convert_to(repeat('x', 300), 'UTF8'), sha256(p.process_key::bytea), '{}'::jsonb
FROM signing_processes p, generate_series(1, 2) n;
ANALYZE;
