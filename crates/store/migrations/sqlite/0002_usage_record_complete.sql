-- Usage records complete (SPEC 3.4, issue 7). Keep in step with migrations/postgres/0002_*.sql.
--   endpoint     which API the request came in on ('chat.completions', 'messages', ...);
--                '' for records written before this migration.
--   completed    the answer was produced (streams: reached their end); NULL = not recorded.
--   client_gone  the client disconnected before the answer completed; NULL = not recorded.
--   cost_usd     now nullable: NULL when no price is known for the target (never a made-up 0).
--   request_body, completion
--                the request as sent and the generated text, only with
--                server.usage_log_bodies: true (each capped by the gateway); NULL otherwise.
-- SQLite cannot drop a NOT NULL constraint in place: the table is rebuilt (no foreign keys
-- point at it).
CREATE TABLE usage_records_v2 (
    request_id         TEXT PRIMARY KEY,
    ts                 INTEGER NOT NULL,
    key_id             TEXT,
    team_id            TEXT,
    endpoint           TEXT NOT NULL DEFAULT '',
    model              TEXT NOT NULL,
    version            TEXT NOT NULL,
    provider           TEXT NOT NULL,
    upstream_model     TEXT NOT NULL,
    status             INTEGER NOT NULL,
    streamed           INTEGER NOT NULL,
    completed          INTEGER,
    client_gone        INTEGER,
    input_tokens       INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cost_usd           REAL,
    latency_ms         REAL NOT NULL,
    ttft_ms            REAL,
    overhead_ms        REAL NOT NULL,
    attempts           TEXT NOT NULL DEFAULT '[]',
    error              TEXT,
    request_body       TEXT,
    completion         TEXT
);
INSERT INTO usage_records_v2 (
    request_id, ts, key_id, team_id, model, version, provider, upstream_model, status, streamed,
    input_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, output_tokens,
    cost_usd, latency_ms, ttft_ms, overhead_ms, attempts, error)
SELECT
    request_id, ts, key_id, team_id, model, version, provider, upstream_model, status, streamed,
    input_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, output_tokens,
    cost_usd, latency_ms, ttft_ms, overhead_ms, attempts, error
FROM usage_records;
DROP TABLE usage_records;
ALTER TABLE usage_records_v2 RENAME TO usage_records;
CREATE INDEX usage_records_ts ON usage_records (ts);
CREATE INDEX usage_records_key_ts ON usage_records (key_id, ts);
CREATE INDEX usage_records_team_ts ON usage_records (team_id, ts);
CREATE INDEX usage_records_model_ts ON usage_records (model, ts);
