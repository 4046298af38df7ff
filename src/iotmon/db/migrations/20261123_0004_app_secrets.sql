-- Secrets every web process must share: the JWT signing key when IOTMON_JWT_SECRET is unset.
CREATE TABLE app_secrets (
    name        text CONSTRAINT pk_app_secrets PRIMARY KEY,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
