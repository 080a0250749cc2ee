-- Records without a key (`auth: none`) or without a team (most keys) no longer get an entry in
-- the key and team indexes: each was one more B-tree insert per record on the usage writer's
-- path, for entries no query reads (every query on these indexes names a key or a team, and
-- `key_id = ?` implies `key_id IS NOT NULL`, so the planners still use them).
DROP INDEX usage_records_key_ts;
CREATE INDEX usage_records_key_ts ON usage_records (key_id, ts) WHERE key_id IS NOT NULL;
DROP INDEX usage_records_team_ts;
CREATE INDEX usage_records_team_ts ON usage_records (team_id, ts) WHERE team_id IS NOT NULL;
