-- Switchyard store, PostgreSQL. Times are unix milliseconds (BIGINT); durations are milliseconds
-- (DOUBLE PRECISION). JSON values are JSONB. Keep this file and migrations/sqlite/0001_init.sql in step.

-- One row per table whose changes replicas poll; `value` is the latest `rev` written there.
CREATE TABLE change_counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO change_counters (name, value) VALUES ('keys', 0), ('teams', 0), ('rollouts', 0);

CREATE TABLE teams (
    id              TEXT PRIMARY KEY,               -- team_<20 base62>
    name            TEXT NOT NULL,
    models          JSONB,                           -- JSON array of globs; NULL = every model
    rpm             BIGINT,
    tpm             BIGINT,
    max_concurrency BIGINT,
    budget_usd      DOUBLE PRECISION,
    budget_period   TEXT CHECK (budget_period IN ('1d', '7d', '30d', '1mo')),  -- NULL = lifetime
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT,
    rev             BIGINT NOT NULL
);
-- A deleted team frees its name.
CREATE UNIQUE INDEX teams_live_name ON teams (name) WHERE deleted_at IS NULL;
CREATE INDEX teams_rev ON teams (rev);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,               -- key_<20 base62>
    name            TEXT NOT NULL,
    hash            TEXT NOT NULL UNIQUE,           -- lowercase hex SHA-256 of the secret
    prefix          TEXT NOT NULL,                  -- first characters of the secret, for display
    team_id         TEXT REFERENCES teams (id),
    models          JSONB,
    rpm             BIGINT,
    tpm             BIGINT,
    max_concurrency BIGINT,
    budget_usd      DOUBLE PRECISION,
    budget_period   TEXT CHECK (budget_period IN ('1d', '7d', '30d', '1mo')),
    expires_at      BIGINT,
    metadata        JSONB NOT NULL DEFAULT '{}',
    source          TEXT NOT NULL CHECK (source IN ('api', 'config')),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    rev             BIGINT NOT NULL
);
CREATE INDEX api_keys_team ON api_keys (team_id);
CREATE INDEX api_keys_rev ON api_keys (rev);

-- One row per request (SPEC 3.4). No foreign keys: records outlive keys and may name none.
CREATE TABLE usage_records (
    request_id         TEXT PRIMARY KEY,
    ts                 BIGINT NOT NULL,            -- request start
    key_id             TEXT,
    team_id            TEXT,
    model              TEXT NOT NULL,
    version            TEXT NOT NULL,
    provider           TEXT NOT NULL,
    upstream_model     TEXT NOT NULL,
    status             BIGINT NOT NULL,
    streamed           BOOLEAN NOT NULL,
    input_tokens       BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cost_usd           DOUBLE PRECISION NOT NULL,
    latency_ms         DOUBLE PRECISION NOT NULL,
    ttft_ms            DOUBLE PRECISION,
    overhead_ms        DOUBLE PRECISION NOT NULL,
    attempts           JSONB NOT NULL DEFAULT '[]',
    error              TEXT
);
CREATE INDEX usage_records_ts ON usage_records (ts);
CREATE INDEX usage_records_key_ts ON usage_records (key_id, ts);
CREATE INDEX usage_records_team_ts ON usage_records (team_id, ts);
CREATE INDEX usage_records_model_ts ON usage_records (model, ts);

CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE rollout_state (
    model          TEXT PRIMARY KEY,
    stable         TEXT NOT NULL,
    canary         TEXT,
    canary_percent DOUBLE PRECISION NOT NULL DEFAULT 0,
    shadow         TEXT,
    shadow_percent DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at     BIGINT NOT NULL,
    rev            BIGINT NOT NULL
);
CREATE INDEX rollout_state_rev ON rollout_state (rev);

CREATE TABLE rollout_history (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model      TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    actor      TEXT NOT NULL,                       -- "admin", "cli", "analysis", ...
    action     TEXT NOT NULL,                       -- "promote", "rollback", "set", ...
    from_value TEXT,
    to_value   TEXT,
    reason     TEXT
);
CREATE INDEX rollout_history_model_id ON rollout_history (model, id);
