#!/usr/bin/env bash
# The read API's query plans before and after issue 32's migrations, on the same data
# (data.sql: 200,000 processes over 5 sources and 90 days): bench/postgresql/plans.sh
# Writes plans-9daed92.txt (the schema before 20261208000001) and plans-issue-32.txt here.
# Needs PostgreSQL (DATABASE_URL's server; two databases are created and dropped).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
migrations="$here/../../worker/migrations"
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
psql() { command psql "$url" -q -v ON_ERROR_STOP=1 "$@"; }
db_url() { echo "${url%/*}/$1"; }
for db in plans_before plans_after; do
    psql -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
done
for f in "$migrations"/*.sql; do
    case "$(basename "$f")" in
        2026120800*) ;;
        *) command psql "$(db_url plans_before)" -q -v ON_ERROR_STOP=1 -f "$f" ;;
    esac
    command psql "$(db_url plans_after)" -q -v ON_ERROR_STOP=1 -f "$f"
done
for db in plans_before plans_after; do
    command psql "$(db_url $db)" -q -v ON_ERROR_STOP=1 -f "$here/data.sql"
done
# The queries as each version writes them (api.rs, replay.rs): only their tie-breakers differ.
# The lookup by process key and `countersign status` are this version's on both (they changed
# after, not with, the schema).
sed 's/ORDERCOL/id/; s/DOCORDER/id/; s/REPLAYORDER/id/' "$here/queries.sql" \
    | command psql "$(db_url plans_before)" -q -v ON_ERROR_STOP=1 > "$here/plans-9daed92.txt"
sed 's/ORDERCOL/position, id, entry_key/; s/DOCORDER/kind, file_name, content_key/; s/REPLAYORDER/event_id/' \
    "$here/queries.sql" | command psql "$(db_url plans_after)" -q -v ON_ERROR_STOP=1 > "$here/plans-issue-32.txt"
for db in plans_before plans_after; do
    psql -c "DROP DATABASE $db"
done
diff "$here/plans-9daed92.txt" "$here/plans-issue-32.txt" | grep -c '^[<>]' | xargs echo "lines that differ:"
