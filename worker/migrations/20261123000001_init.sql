-- The raw archive: one row per (source, event id). A redelivery or a duplicate increments
-- `deliveries`; it never adds a row.
CREATE TABLE webhook_events (
    id                 BIGSERIAL PRIMARY KEY,
    source             TEXT        NOT NULL,
    provider           TEXT        NOT NULL,
    event_id           TEXT        NOT NULL,
    event_type         TEXT        NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL,
    body               BYTEA       NOT NULL,
    body_sha256        BYTEA       NOT NULL,
    headers            JSONB       NOT NULL,
    deliveries         INTEGER     NOT NULL DEFAULT 1,
    first_persisted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_delivered_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (source, event_id)
);
CREATE INDEX webhook_events_by_time ON webhook_events (source, received_at);

-- Signatures that do not cover the body (Taktikal: TimeStamp + Guid), with the body they came
-- with: a second body under the same signature is a suspected replay, whichever ingester
-- replica received it.
CREATE TABLE signature_uses (
    source        TEXT        NOT NULL,
    signature_id  TEXT        NOT NULL,
    body_sha256   BYTEA       NOT NULL,
    event_id      TEXT        NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, signature_id)
);

-- The projection: a pure, idempotent function of the raw events above.
CREATE TABLE signing_processes (
    source            TEXT        NOT NULL,
    process_key       TEXT        NOT NULL,
    provider          TEXT        NOT NULL,
    status            TEXT        NOT NULL,
    status_rank       SMALLINT    NOT NULL,
    flow_key          TEXT,
    flow_name         TEXT,
    company_key       TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    status_changed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, process_key)
);
CREATE INDEX signing_processes_by_time ON signing_processes (source, updated_at);

CREATE TABLE signees (
    source          TEXT        NOT NULL,
    process_key     TEXT        NOT NULL,
    signee_key      TEXT        NOT NULL,
    name            TEXT,
    ssn             TEXT,
    email           TEXT,
    phone           TEXT,
    address         TEXT,
    postal_code     TEXT,
    city            TEXT,
    delivery_method TEXT,
    signed          BOOLEAN     NOT NULL DEFAULT false,
    signed_at       TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, process_key, signee_key),
    FOREIGN KEY (source, process_key) REFERENCES signing_processes ON DELETE CASCADE
);

CREATE TABLE activity (
    id          BIGSERIAL   PRIMARY KEY,
    source      TEXT        NOT NULL,
    process_key TEXT        NOT NULL,
    entry_key   TEXT        NOT NULL,
    flow_key    TEXT,
    signee_key  TEXT,
    status      TEXT        NOT NULL,
    description TEXT        NOT NULL,
    file_name   TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT        NOT NULL,
    event_id    TEXT        NOT NULL,
    UNIQUE (source, process_key, entry_key),
    FOREIGN KEY (source, process_key) REFERENCES signing_processes ON DELETE CASCADE
);
CREATE INDEX activity_by_time ON activity (source, created_at);

-- Document contents, stored once by sha256 in the document store.
CREATE TABLE stored_documents (
    sha256       TEXT        PRIMARY KEY,
    size         BIGINT      NOT NULL,
    content_type TEXT        NOT NULL,
    stored_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The documents of a process: stored content (sha256) or a reference to the provider's copy.
CREATE TABLE documents (
    id              BIGSERIAL   PRIMARY KEY,
    source          TEXT        NOT NULL,
    process_key     TEXT        NOT NULL,
    kind            TEXT        NOT NULL,
    file_name       TEXT        NOT NULL DEFAULT '',
    content_key     TEXT        NOT NULL,
    sha256          TEXT        REFERENCES stored_documents,
    content_type    TEXT,
    size            BIGINT,
    url             TEXT,
    reference_id    TEXT,
    attachment_type INTEGER,
    signee_key      TEXT,
    description     TEXT,
    event_id        TEXT        NOT NULL,
    UNIQUE (source, process_key, kind, file_name, content_key),
    FOREIGN KEY (source, process_key) REFERENCES signing_processes ON DELETE CASCADE
);
