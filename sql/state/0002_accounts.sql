-- Accounts and their API keys (docs/decisions/0012). Command-side state: written by `oee accounts`, read by
-- every API process to authenticate a request; never derived from the log.

CREATE TABLE IF NOT EXISTS accounts (
    name         text        PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    operator     boolean     NOT NULL DEFAULT false,
    disabled_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a key is kept; `key_id` (the visible part of the key) finds it.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{12}$'),
    account     text        NOT NULL REFERENCES accounts (name),
    key_hash    bytea       NOT NULL CHECK (length(key_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys (account);

-- Every change is announced on channel `oee_accounts` (delivered at commit) so each API process drops what
-- it cached about that key or account at once, whoever made the change: the CLI, psql, a script.
CREATE OR REPLACE FUNCTION notify_accounts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('oee_accounts', json_build_object('key_id', COALESCE(NEW.key_id, OLD.key_id))::text);
    ELSE
        PERFORM pg_notify('oee_accounts', json_build_object('account', COALESCE(NEW.name, OLD.name))::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS accounts_changed ON accounts;
CREATE TRIGGER accounts_changed AFTER UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION notify_accounts_changed();
DROP TRIGGER IF EXISTS api_keys_changed ON api_keys;
CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_accounts_changed();
