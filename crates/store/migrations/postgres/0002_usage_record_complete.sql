-- Usage records complete (SPEC 3.4, issue 7). Keep in step with migrations/sqlite/0002_*.sql.
--   endpoint     which API the request came in on ('chat.completions', 'messages', ...);
--                '' for records written before this migration.
--   completed    the answer was produced (streams: reached their end); NULL = not recorded.
--   client_gone  the client disconnected before the answer completed; NULL = not recorded.
--   cost_usd     now nullable: NULL when no price is known for the target (never a made-up 0).
--   request_body, completion
--                the request as sent and the generated text, only with
--                server.usage_log_bodies: true (each capped by the gateway); NULL otherwise.
-- Every statement is a catalogue change only (no table rewrite), so this is quick on a large
-- table.
ALTER TABLE usage_records ALTER COLUMN cost_usd DROP NOT NULL;
ALTER TABLE usage_records ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_records ADD COLUMN completed BOOLEAN;
ALTER TABLE usage_records ADD COLUMN client_gone BOOLEAN;
ALTER TABLE usage_records ADD COLUMN request_body TEXT;
ALTER TABLE usage_records ADD COLUMN completion TEXT;
