-- The reference app's own table. Applied through the toolkit's migration runner, so three
-- replicas starting together create it once.
CREATE TABLE IF NOT EXISTS orders (
  id          bigserial PRIMARY KEY,
  item        text        NOT NULL CHECK (length(item) BETWEEN 1 AND 200),
  quantity    integer     NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
  note        text        CHECK (note IS NULL OR length(note) <= 1000),
  status      text        NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'paid', 'shipped', 'cancelled')),
  created_by  text        NOT NULL,
  instance_id text        NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_created_at_idx ON orders (created_at DESC, id DESC);
