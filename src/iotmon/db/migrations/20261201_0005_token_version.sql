-- Revocable sessions: every token carries its user's token_version; demotion, deletion, a
-- password change and logout bump it, and tokens of an older version are refused.
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0;
