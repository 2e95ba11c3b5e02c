-- Idempotency records for the PostgreSQL store (shoal/idempotency).
-- One row per scoped key. While a request runs the row is 'in_flight' with a lease owned by a
-- random token; completion is a compare-and-set on that token and turns it into 'done' with the
-- stored response. Rows whose expires_at has passed are treated as absent and may be purged.
CREATE TABLE IF NOT EXISTS shoal_idempotency (
  key          text PRIMARY KEY,
  fingerprint  text NOT NULL,
  state        text NOT NULL CHECK (state IN ('in_flight', 'done')),
  token        text,
  lease_until  timestamptz,
  status       integer,
  headers      jsonb,
  body         bytea,
  replayable   boolean,
  takeovers    integer NOT NULL DEFAULT 0,
  created_at   timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  expires_at   timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS shoal_idempotency_expires_at ON shoal_idempotency (expires_at);
