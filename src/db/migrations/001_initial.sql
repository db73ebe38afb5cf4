-- TunnelPulse schema, version 1. See docs/database.md for why each table and key is shaped as it is.
-- Table names are unqualified on purpose: the connection's search_path picks the schema.

-- NodePass masters. The API key is stored sealed by src/db/secret-box.ts, never in clear.
CREATE TABLE endpoints (
  id           bigserial PRIMARY KEY,
  name         text NOT NULL UNIQUE,
  url          text NOT NULL,
  api_key_enc  text NOT NULL,
  insecure_tls boolean NOT NULL DEFAULT false,
  enabled      boolean NOT NULL DEFAULT true,
  master_id    text,
  master_info  jsonb,
  -- For several TunnelPulse processes sharing one database: who watches this endpoint, and until when.
  lease_owner  text,
  lease_until  timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per NodePass instance ever seen; deleted instances keep a tombstone.
-- Two writers with separate newer-wins guards: the static configuration (config_at) written through at once,
-- and the coalesced dynamic state (state_at) flushed in batches. `status` arrives on both paths, so it has its
-- own guard (status_at) and an older write on either path never overwrites a newer status.
CREATE TABLE tunnels (
  endpoint_id   bigint NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  instance_id   text NOT NULL,
  -- static configuration
  alias         text NOT NULL DEFAULT '',
  type          text NOT NULL DEFAULT '',
  url           text NOT NULL DEFAULT '',
  config        text NOT NULL DEFAULT '',
  restart       boolean NOT NULL DEFAULT false,
  meta          jsonb NOT NULL DEFAULT '{}',
  config_at     timestamptz,
  deleted       boolean NOT NULL DEFAULT false,
  deleted_at    timestamptz,
  -- status, from either path
  status        text NOT NULL DEFAULT 'stopped',
  status_at     timestamptz,
  -- dynamic state
  mode          integer NOT NULL DEFAULT 0,
  ping          integer NOT NULL DEFAULT 0,
  pool          integer NOT NULL DEFAULT 0,
  tcps          integer NOT NULL DEFAULT 0,
  udps          integer NOT NULL DEFAULT 0,
  -- the last absolute counters NodePass reported
  tcprx         bigint NOT NULL DEFAULT 0,
  tcptx         bigint NOT NULL DEFAULT 0,
  udprx         bigint NOT NULL DEFAULT 0,
  udptx         bigint NOT NULL DEFAULT 0,
  -- the sum of accepted deltas since the tunnel was first seen
  traffic_tcprx bigint NOT NULL DEFAULT 0,
  traffic_tcptx bigint NOT NULL DEFAULT 0,
  traffic_udprx bigint NOT NULL DEFAULT 0,
  traffic_udptx bigint NOT NULL DEFAULT 0,
  -- counter-reset bookkeeping the tunnel actor needs to resume exactly (opaque to SQL)
  resume        jsonb NOT NULL DEFAULT '{}',
  state_at      timestamptz,
  PRIMARY KEY (endpoint_id, instance_id)
);

-- Status history. The key is the change itself, so a replayed change inserts nothing.
CREATE TABLE tunnel_status_changes (
  endpoint_id bigint NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  instance_id text NOT NULL,
  at          timestamptz NOT NULL,
  status      text NOT NULL,
  PRIMARY KEY (endpoint_id, instance_id, at, status)
);
CREATE INDEX tunnel_status_changes_at ON tunnel_status_changes (at);

-- Disconnected intervals of an endpoint; to_at is null while it is still disconnected.
CREATE TABLE endpoint_offline (
  endpoint_id bigint NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  from_at     timestamptz NOT NULL,
  to_at       timestamptz,
  reason      text NOT NULL DEFAULT '',
  PRIMARY KEY (endpoint_id, from_at),
  CHECK (to_at IS NULL OR to_at >= from_at)
);

-- Instance log lines, ANSI codes removed. The unique key is the line's identity on the wire (NodePass sends no
-- event ids): a replayed batch inserts nothing twice.
CREATE TABLE tunnel_logs (
  id          bigserial PRIMARY KEY,
  endpoint_id bigint NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  instance_id text NOT NULL,
  at          timestamptz NOT NULL,
  event_time  text NOT NULL,
  line_hash   text NOT NULL,
  ordinal     integer NOT NULL,
  level       text NOT NULL,
  message     text NOT NULL,
  CONSTRAINT tunnel_logs_identity UNIQUE (endpoint_id, instance_id, event_time, line_hash, ordinal)
);
-- Keyset paging, newest first: (at, id) is unique and ordered.
CREATE INDEX tunnel_logs_page ON tunnel_logs (endpoint_id, instance_id, at DESC, id DESC);
CREATE INDEX tunnel_logs_level ON tunnel_logs (endpoint_id, level, at DESC, id DESC);
-- Retention deletes by time. Lines arrive in roughly time order, so a BRIN index is tiny and nearly free to keep.
CREATE INDEX tunnel_logs_at ON tunnel_logs USING brin (at);

-- Lines kept and lines cut by the per-instance daily cap (UTC days).
CREATE TABLE log_daily_counts (
  endpoint_id bigint NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  instance_id text NOT NULL,
  day         date NOT NULL,
  kept        bigint NOT NULL DEFAULT 0,
  cut         bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (endpoint_id, instance_id, day)
);

-- Traffic per tunnel per hour, written as the bucket's absolute value (replay-safe, never incremented).
-- `closed` is set by the rollup once the hour is over; a late write that grows a bucket reopens it.
CREATE TABLE traffic_hourly_tunnel (
  endpoint_id bigint NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  instance_id text NOT NULL,
  hour        timestamptz NOT NULL,
  tcprx       bigint NOT NULL DEFAULT 0,
  tcptx       bigint NOT NULL DEFAULT 0,
  udprx       bigint NOT NULL DEFAULT 0,
  udptx       bigint NOT NULL DEFAULT 0,
  closed      boolean NOT NULL DEFAULT false,
  PRIMARY KEY (endpoint_id, instance_id, hour),
  -- Whole UTC hours (epoch arithmetic, not date_trunc, which follows the session's time zone).
  CHECK (mod(extract(epoch FROM hour), 3600) = 0)
);
CREATE INDEX traffic_hourly_tunnel_hour ON traffic_hourly_tunnel (hour);
CREATE INDEX traffic_hourly_tunnel_open ON traffic_hourly_tunnel (hour, endpoint_id) WHERE NOT closed;

-- Totals recomputed by the rollup from traffic_hourly_tunnel (sums, not increments: running it twice changes
-- nothing).
CREATE TABLE traffic_hourly_endpoint (
  endpoint_id bigint NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
  hour        timestamptz NOT NULL,
  tcprx       bigint NOT NULL DEFAULT 0,
  tcptx       bigint NOT NULL DEFAULT 0,
  udprx       bigint NOT NULL DEFAULT 0,
  udptx       bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (endpoint_id, hour)
);
CREATE INDEX traffic_hourly_endpoint_hour ON traffic_hourly_endpoint (hour);

CREATE TABLE traffic_hourly_global (
  hour  timestamptz PRIMARY KEY,
  tcprx bigint NOT NULL DEFAULT 0,
  tcptx bigint NOT NULL DEFAULT 0,
  udprx bigint NOT NULL DEFAULT 0,
  udptx bigint NOT NULL DEFAULT 0
);
