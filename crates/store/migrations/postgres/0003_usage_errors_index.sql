-- Failed requests, newest first: `GET /admin/v1/requests?status=error|429|5xx|4xx` walks this
-- small index (a few percent of the rows) in `ts` order instead of every record, and checks
-- `status` in the index, so a rare or absent status code no longer scans the whole table. The
-- condition is the store's definition of an error (`ERROR` in src/usage/mod.rs); queries repeat
-- it verbatim, which SQLite needs before it uses a partial index. Benchmark: SCALE.md.
CREATE INDEX usage_records_errors_ts ON usage_records (ts, status) WHERE status >= 400 OR error IS NOT NULL;
