-- TunnelPulse schema, version 3: room on each page for HOT updates of the rows rewritten all the time (see
-- docs/database.md, "Updates in place"). A state flush rewrites every reporting tunnel's row and its open hour
-- bucket every few seconds, and each log batch bumps its instances' daily counts. With full pages the new row
-- version goes to another page and every index gets a new entry (measured 0.6 % of tunnel updates HOT, 1–4 % of
-- bucket updates); with free room it stays on its page, no index is touched, and the old version is pruned in
-- place without VACUUM (measured 90 % and 84 % HOT; backend CPU of a state flush about halved).
-- Only pages filled from now on keep the room: existing rows move to such pages as they are updated.
ALTER TABLE tunnels SET (fillfactor = 70);
ALTER TABLE traffic_hourly_tunnel SET (fillfactor = 85);
ALTER TABLE log_daily_counts SET (fillfactor = 85);
