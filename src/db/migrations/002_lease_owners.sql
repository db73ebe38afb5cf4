-- TunnelPulse schema, version 2: presence of the processes that share the endpoints through leases
-- (src/db/leases.ts, docs/database.md "Several processes"). A process that holds no endpoint yet (it just joined,
-- and everything is held) must still count as a live owner, or the others would never shrink their fair share
-- to make room for it. Times are the server's clock_timestamp(), like the leases.
CREATE TABLE lease_owners (
  owner       text PRIMARY KEY,
  alive_until timestamptz NOT NULL,
  -- when this presence began (a process that left or expired and came back starts a new one)
  joined_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
