/** The lease settings in the configuration: off by default, a clear error for a bad value. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('lease configuration', () => {
  it('is off by default, with a unique owner per process run and 30 s / 10 s timings', () => {
    const config = loadConfig({});
    expect(config.leases).toBe(false);
    expect(config.leaseTtlMs).toBe(30_000);
    expect(config.leaseRenewMs).toBe(10_000);
    expect(config.leaseOwner).toMatch(new RegExp(`:${process.pid}:[0-9a-f]{8}$`));
    expect(loadConfig({}).leaseOwner).not.toBe(config.leaseOwner);
  });

  it('reads TUNNELPULSE_LEASES, the owner and the timings', () => {
    const config = loadConfig({ TUNNELPULSE_LEASES: '1', TUNNELPULSE_LEASE_OWNER: 'node-a', TUNNELPULSE_LEASE_TTL_MS: '6000', TUNNELPULSE_LEASE_RENEW_MS: '2000' });
    expect(config).toMatchObject({ leases: true, leaseOwner: 'node-a', leaseTtlMs: 6_000, leaseRenewMs: 2_000 });
    expect(loadConfig({ TUNNELPULSE_LEASES: 'off' }).leases).toBe(false);
  });

  it('refuses a value it cannot read, and a renewal period longer than half the TTL', () => {
    expect(() => loadConfig({ TUNNELPULSE_LEASES: 'yes please' })).toThrow(ConfigError);
    expect(() => loadConfig({ TUNNELPULSE_LEASES: '1', TUNNELPULSE_LEASE_TTL_MS: '10000', TUNNELPULSE_LEASE_RENEW_MS: '6000' })).toThrow(/at most half/);
    expect(() => loadConfig({ TUNNELPULSE_LEASE_TTL_MS: '10' })).toThrow(/TUNNELPULSE_LEASE_TTL_MS/);
  });
});
