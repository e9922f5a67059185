-- The read API's queries (worker/src/api.rs, replay.rs; cli status), with ORDERCOL, DOCORDER and
-- REPLAYORDER standing for the tie-breakers that differ between versions (plans.sh fills them in).
PREPARE q_by_key(text) AS WITH RECURSIVE sources (source) AS (
   (SELECT source FROM signing_processes ORDER BY source LIMIT 1)
   UNION ALL
   SELECT (SELECT p.source FROM signing_processes p WHERE p.source > s.source ORDER BY p.source LIMIT 1)
   FROM sources s WHERE s.source IS NOT NULL)
 SELECT p.source, p.process_key, p.status, p.metadata, p.provider, p.api_confirmed
 FROM sources s JOIN signing_processes p ON p.source = s.source AND p.process_key = $1 ORDER BY p.source;
PREPARE q_by_key_in(text, text) AS SELECT source, process_key, status, metadata, provider, api_confirmed FROM signing_processes
 WHERE source = $1 AND process_key = $2;
PREPARE q_between(text, timestamptz, timestamptz, int8, int8) AS SELECT p.source, p.process_key, p.status, p.metadata, p.provider, p.api_confirmed
 FROM signing_processes p WHERE ($1::text IS NULL OR p.source = $1)
   AND EXISTS (SELECT 1 FROM activity a WHERE a.source = p.source AND a.process_key = p.process_key
                 AND ($2::timestamptz IS NULL OR a.created_at >= $2) AND ($3::timestamptz IS NULL OR a.created_at < $3))
 ORDER BY p.updated_at DESC, p.source, p.process_key LIMIT $4 OFFSET $5;
PREPARE q_log(text, text, int8, int8) AS SELECT flow_key, process_key, signee_key, status, description, file_name, created_at, created_by
 FROM activity WHERE source = $1 AND process_key = $2 ORDER BY created_at, ORDERCOL LIMIT $3 OFFSET $4;
PREPARE q_count(text, text) AS SELECT count(*) FROM activity WHERE source = $1 AND process_key = $2;
PREPARE q_signees(text, text) AS SELECT s.process_key, s.signee_key FROM signees s JOIN signing_processes p USING (source, process_key)
 WHERE s.source = $1 AND s.process_key = $2 ORDER BY s.created_at, s.signee_key;
PREPARE q_docs(text, text) AS SELECT kind, file_name, sha256 FROM documents WHERE source = $1 AND process_key = $2 ORDER BY DOCORDER;
PREPARE q_content(text) AS SELECT s.content_type FROM stored_documents s
 WHERE s.sha256 = $1 AND EXISTS (SELECT 1 FROM documents d WHERE d.sha256 = s.sha256);
PREPARE q_replay(text, timestamptz, timestamptz) AS SELECT provider, event_id, received_at FROM webhook_events
 WHERE source = $1 AND ($2::timestamptz IS NULL OR received_at >= $2) AND ($3::timestamptz IS NULL OR received_at < $3) ORDER BY received_at, REPLAYORDER;
PREPARE q_status AS WITH RECURSIVE sources (source) AS (
   (SELECT source FROM webhook_events ORDER BY source LIMIT 1)
   UNION ALL
   SELECT (SELECT e.source FROM webhook_events e WHERE e.source > s.source ORDER BY e.source LIMIT 1)
   FROM sources s WHERE s.source IS NOT NULL)
 SELECT s.source, (SELECT max(e.received_at) FROM webhook_events e WHERE e.source = s.source)
 FROM sources s WHERE s.source IS NOT NULL ORDER BY s.source;
SET plan_cache_mode = force_custom_plan;
\echo == by key (no source)
EXPLAIN (COSTS OFF) EXECUTE q_by_key('sp' || md5('777'));
\echo == by key (source)
EXPLAIN (COSTS OFF) EXECUTE q_by_key_in('fr', 'sp' || md5('777'));
\echo == between, all sources, no range
EXPLAIN (COSTS OFF) EXECUTE q_between(NULL, NULL, NULL, 100, 0);
\echo == between, one source, last day
EXPLAIN (COSTS OFF) EXECUTE q_between('fr', now() - interval '1 day', now(), 100, 0);
\echo == between, all sources, one hour 60 days ago
EXPLAIN (COSTS OFF) EXECUTE q_between(NULL, now() - interval '60 days', now() - interval '60 days' + interval '1 hour', 100, 0);
\echo == between, one source, one hour 60 days ago
EXPLAIN (COSTS OFF) EXECUTE q_between('fr', now() - interval '60 days', now() - interval '60 days' + interval '1 hour', 100, 0);
\echo == log
EXPLAIN (COSTS OFF) EXECUTE q_log('fr', 'sp' || md5('777'), 100, 0);
\echo == count
EXPLAIN (COSTS OFF) EXECUTE q_count('fr', 'sp' || md5('777'));
\echo == signees
EXPLAIN (COSTS OFF) EXECUTE q_signees('fr', 'sp' || md5('777'));
\echo == documents
EXPLAIN (COSTS OFF) EXECUTE q_docs('fr', 'sp' || md5('777'));
\echo == document content
EXPLAIN (COSTS OFF) EXECUTE q_content(encode(sha256('x'::bytea), 'hex'));
\echo == archive replay, one day
EXPLAIN (COSTS OFF) EXECUTE q_replay('fr', now() - interval '1 day', now());
\echo == status
EXPLAIN (COSTS OFF) EXECUTE q_status;
