/**
 * LeaseRepo against the real database: owners divide endpoints without overlap (also when they claim at the
 * same moment), renewals keep what is held, an expired lease moves to another owner, disabled endpoints are
 * never claimed, release frees at once.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { LeaseRepo } from '../../src/db/leases.js';
import { useTestDatabase } from '../support/database.js';

const testDb = useTestDatabase();
let ids: number[] = [];

beforeEach(async () => {
  await testDb.reset();
  ids = [];
  for (let i = 1; i <= 10; i++) {
    const [row] = await testDb.sql<{ id: number }[]>`
      INSERT INTO endpoints (name, url, api_key_enc, enabled) VALUES (${`e${i}`}, 'http://127.0.0.1:1/api/v1', 'unused', ${i !== 10})
      RETURNING id`;
    ids.push(row!.id);
  }
});

const enabled = () => ids.slice(0, 9);

describe('endpoint leases', () => {
  it('divides the enabled endpoints between owners without overlap, and renewals keep them', async () => {
    const a = new LeaseRepo(testDb.db, 'a');
    const b = new LeaseRepo(testDb.db, 'b');
    const heldA = await a.claim({ ttlMs: 60_000, limit: 5 });
    const heldB = await b.claim({ ttlMs: 60_000 });
    expect(heldA).toHaveLength(5);
    expect(heldB).toHaveLength(4);
    expect([...heldA, ...heldB].sort((x, y) => x - y)).toEqual(enabled());
    expect(await a.claim({ ttlMs: 60_000, limit: 5 })).toEqual(heldA); // a renewal: the same ones
    expect(await a.held()).toEqual(heldA);
  });

  it('two owners claiming at the same moment never both win an endpoint', async () => {
    for (let round = 0; round < 5; round++) {
      await testDb.sql`UPDATE endpoints SET lease_owner = NULL, lease_until = NULL`;
      const owners = ['a', 'b', 'c'].map((name) => new LeaseRepo(testDb.db, `${name}${round}`));
      const results = await Promise.all(owners.map((o) => o.claim({ ttlMs: 60_000 })));
      const all = results.flat().sort((x, y) => x - y);
      expect(all).toEqual(enabled()); // each exactly once
    }
  });

  it('an expired lease goes to another owner; the old owner no longer holds it', async () => {
    const a = new LeaseRepo(testDb.db, 'a');
    const b = new LeaseRepo(testDb.db, 'b');
    expect(await a.claim({ ttlMs: 300 })).toEqual(enabled());
    expect(await b.claim({ ttlMs: 60_000 })).toEqual([]);
    // Wait on the database's clock, not ours: until a's leases have expired there.
    const deadline = Date.now() + 10_000;
    while ((await a.held()).length > 0) {
      if (Date.now() > deadline) throw new Error('leases did not expire');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await b.claim({ ttlMs: 60_000 })).toEqual(enabled());
    expect(await a.claim({ ttlMs: 60_000 })).toEqual([]);
  });

  it('release frees at once, all or some', async () => {
    const a = new LeaseRepo(testDb.db, 'a');
    const b = new LeaseRepo(testDb.db, 'b');
    await a.claim({ ttlMs: 60_000 });
    expect(await a.release([ids[0]!, ids[1]!])).toBe(2);
    expect(await b.claim({ ttlMs: 60_000 })).toEqual([ids[0], ids[1]]);
    expect(await a.release()).toBe(7);
    expect(await b.claim({ ttlMs: 60_000 })).toEqual(enabled());
  });

  it('census: a live owner holding nothing counts (presence), leave and expiry forget it', async () => {
    const a = new LeaseRepo(testDb.db, 'a');
    const b = new LeaseRepo(testDb.db, 'b');
    await a.heartbeat(60_000);
    await a.claim({ ttlMs: 60_000 });
    expect(await a.census()).toEqual({ enabledEndpoints: 9, liveOwners: 1, fewestHeld: 9 });
    // b counts itself before its first heartbeat; after it, a counts b too, with nothing held.
    expect(await b.census()).toEqual({ enabledEndpoints: 9, liveOwners: 2, fewestHeld: 0 });
    await b.heartbeat(60_000);
    expect(await a.census()).toEqual({ enabledEndpoints: 9, liveOwners: 2, fewestHeld: 0 });
    expect(await b.leave()).toBe(0);
    expect(await a.census()).toMatchObject({ liveOwners: 1 });
    // A presence that ran out (a crashed process) no longer counts, and the next heartbeat deletes it.
    await b.heartbeat(1);
    await testDb.sql`SELECT pg_sleep(0.01)`;
    expect(await a.census()).toMatchObject({ liveOwners: 1 });
    await a.heartbeat(60_000);
    expect((await testDb.sql<{ owner: string }[]>`SELECT owner FROM lease_owners ORDER BY owner`).map((r) => r.owner)).toEqual(['a']);
    expect(await a.leave()).toBe(9);
    expect(await testDb.sql`SELECT 1 FROM lease_owners`).toHaveLength(0);
    expect(await b.claim({ ttlMs: 60_000 })).toEqual(enabled());
  });
});
