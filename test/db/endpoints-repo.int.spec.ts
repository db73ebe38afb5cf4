import { randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { EndpointsRepo } from '../../src/db/endpoints-repo.js';
import { EndpointNameTakenError, EndpointNotFoundError } from '../../src/db/errors.js';
import { SecretBox } from '../../src/db/secret-box.js';
import { Store } from '../../src/db/store.js';
import { useTestDatabase } from '../support/database.js';
import { configRecord, logLines, T0 } from './records.js';

const testDb = useTestDatabase();
const secrets = new SecretBox(randomBytes(32));
let repo: EndpointsRepo;

beforeEach(async () => {
  await testDb.reset();
  repo = new EndpointsRepo(testDb.db, secrets);
});

const API_KEY = 'a7c3e1f0b2d4968ab7c3e1f0b2d4968a';

describe('EndpointsRepo', () => {
  it('stores the API key sealed and never returns it from list or get', async () => {
    const created = await repo.create({ name: 'edge-1', url: 'https://10.0.0.1:9090/api', apiKey: API_KEY });
    expect(created).toMatchObject({ id: 1, name: 'edge-1', enabled: true, insecureTls: false, masterId: null });

    const [stored] = await testDb.sql`SELECT api_key_enc FROM endpoints`;
    expect(stored?.['api_key_enc']).toMatch(/^tp1\./);
    expect(stored?.['api_key_enc']).not.toContain(API_KEY);

    for (const endpoint of [await repo.get(created.id), ...(await repo.list())]) {
      expect(JSON.stringify(endpoint)).not.toContain(API_KEY);
      expect(JSON.stringify(endpoint)).not.toContain('tp1.');
    }
    expect(await repo.revealApiKey(created.id)).toBe(API_KEY);
  });

  it('updates fields and rotates the key', async () => {
    const { id, updatedAt } = await repo.create({ name: 'edge-1', url: 'https://a/api', apiKey: API_KEY });
    const updated = await repo.update(id, { url: 'https://b/api', apiKey: 'rotated', insecureTls: true });
    expect(updated).toMatchObject({ name: 'edge-1', url: 'https://b/api', insecureTls: true });
    expect(updated.updatedAt).toBeGreaterThanOrEqual(updatedAt);
    expect(await repo.revealApiKey(id)).toBe('rotated');
    expect((await repo.disable(id)).enabled).toBe(false);
    expect((await repo.enable(id)).enabled).toBe(true);
  });

  it('records the master facts from /info', async () => {
    const { id } = await repo.create({ name: 'edge-1', url: 'https://a/api', apiKey: API_KEY });
    const info = {
      masterId: 'f00dfeed', alias: 'm', version: 'v1.10.0', os: 'linux', arch: 'amd64', name: 'edge',
      uptime: 12, system: { cpu: 3 },
    };
    await repo.setMasterInfo(id, info);
    expect(await repo.getByName('edge-1')).toMatchObject({ masterId: 'f00dfeed', masterInfo: info });
  });

  it('reports a taken name and a missing endpoint with their own errors', async () => {
    const { id } = await repo.create({ name: 'edge-1', url: 'https://a/api', apiKey: API_KEY });
    await repo.create({ name: 'edge-2', url: 'https://b/api', apiKey: API_KEY });
    await expect(repo.create({ name: 'edge-1', url: 'https://c/api', apiKey: 'k' })).rejects.toBeInstanceOf(EndpointNameTakenError);
    await expect(repo.update(id, { name: 'edge-2' })).rejects.toBeInstanceOf(EndpointNameTakenError);
    await expect(repo.update(999, { url: 'https://x' })).rejects.toBeInstanceOf(EndpointNotFoundError);
    await expect(repo.revealApiKey(999)).rejects.toBeInstanceOf(EndpointNotFoundError);
    expect(await repo.get(999)).toBeNull();
  });

  it('deletes an endpoint together with its tunnels and logs', async () => {
    const { id } = await repo.create({ name: 'edge-1', url: 'https://a/api', apiKey: API_KEY });
    const store = new Store(testDb.db);
    await store.writeTunnelConfigs([configRecord(id, 'aaaa0001', T0)]);
    await store.insertLogs(logLines(id, 'aaaa0001', T0, 3));
    expect(await repo.delete(id)).toBe(true);
    expect(await repo.delete(id)).toBe(false);
    expect(await store.loadTunnels()).toEqual([]);
    expect(await store.countLogs({ endpointId: id })).toBe(0);
  });
});
