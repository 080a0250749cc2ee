-- Switchyard store, SQLite. Times are unix milliseconds (INTEGER); durations are milliseconds (REAL).
-- JSON values are TEXT. Keep this file and migrations/postgres/0001_init.sql in step.

-- One row per table whose changes replicas poll; `value` is the latest `rev` written there.
CREATE TABLE change_counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO change_counters (name, value) VALUES ('keys', 0), ('teams', 0), ('rollouts', 0);

CREATE TABLE teams (
    id              TEXT PRIMARY KEY,               -- team_<20 base62>
    name            TEXT NOT NULL,
    models          TEXT,                           -- JSON array of globs; NULL = every model
    rpm             INTEGER,
    tpm             INTEGER,
    max_concurrency INTEGER,
    budget_usd      REAL,
    budget_period   TEXT CHECK (budget_period IN ('1d', '7d', '30d', '1mo')),  -- NULL = lifetime
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted_at      INTEGER,
    rev             INTEGER NOT NULL
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
    models          TEXT,
    rpm             INTEGER,
    tpm             INTEGER,
    max_concurrency INTEGER,
    budget_usd      REAL,
    budget_period   TEXT CHECK (budget_period IN ('1d', '7d', '30d', '1mo')),
    expires_at      INTEGER,
    metadata        TEXT NOT NULL DEFAULT '{}',
    source          TEXT NOT NULL CHECK (source IN ('api', 'config')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    rev             INTEGER NOT NULL
);
CREATE INDEX api_keys_team ON api_keys (team_id);
CREATE INDEX api_keys_rev ON api_keys (rev);

-- One row per request (SPEC 3.4). No foreign keys: records outlive keys and may name none.
CREATE TABLE usage_records (
    request_id         TEXT PRIMARY KEY,
    ts                 INTEGER NOT NULL,            -- request start
    key_id             TEXT,
    team_id            TEXT,
    model              TEXT NOT NULL,
    version            TEXT NOT NULL,
    provider           TEXT NOT NULL,
    upstream_model     TEXT NOT NULL,
    status             INTEGER NOT NULL,
    streamed           INTEGER NOT NULL,            -- 0 / 1
    input_tokens       INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cost_usd           REAL NOT NULL,
    latency_ms         REAL NOT NULL,
    ttft_ms            REAL,
    overhead_ms        REAL NOT NULL,
    attempts           TEXT NOT NULL DEFAULT '[]',  -- JSON array
    error              TEXT
);
CREATE INDEX usage_records_ts ON usage_records (ts);
CREATE INDEX usage_records_key_ts ON usage_records (key_id, ts);
CREATE INDEX usage_records_team_ts ON usage_records (team_id, ts);
CREATE INDEX usage_records_model_ts ON usage_records (model, ts);

CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE rollout_state (
    model          TEXT PRIMARY KEY,
    stable         TEXT NOT NULL,
    canary         TEXT,
    canary_percent REAL NOT NULL DEFAULT 0,
    shadow         TEXT,
    shadow_percent REAL NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    rev            INTEGER NOT NULL
);
CREATE INDEX rollout_state_rev ON rollout_state (rev);

CREATE TABLE rollout_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    model      TEXT NOT NULL,
    ts         INTEGER NOT NULL,
    actor      TEXT NOT NULL,                       -- "admin", "cli", "analysis", ...
    action     TEXT NOT NULL,                       -- "promote", "rollback", "set", ...
    from_value TEXT,
    to_value   TEXT,
    reason     TEXT
);
CREATE INDEX rollout_history_model_id ON rollout_history (model, id);
