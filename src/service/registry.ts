/**
 * The endpoint registry facade: the one way to add, change, enable, disable, reconnect and remove the NodePass
 * masters TunnelPulse watches. It keeps the database (`EndpointsRepo`, keys sealed at rest) and the actors
 * (`Runtime`) in step, and answers reads from an in-memory copy of the rows (no key in it), so the HTTP views
 * never wait on the database.
 *
 * Rules:
 *  - URLs are normalised (`normaliseMasterUrl`) before they are stored: the row holds the canonical API base;
 *  - a taken name is `EndpointNameTakenError` (HTTP 409), an unknown id `EndpointNotFoundError` (404), a bad URL
 *    `InvalidMasterUrlError` (400);
 *  - removing an endpoint stops its actor (its stream closes), writes what was still queued for it, then deletes
 *    the row and, by cascade, its tunnels, logs, traffic and history. Keeping them would leave rows no endpoint
 *    owns; an operator who wants the history kept disables the endpoint instead.
 */
import type { EndpointSeed } from '../config.js';
import type { Endpoint, EndpointChanges, EndpointsRepo, NewEndpoint } from '../db/endpoints-repo.js';
import { EndpointNotFoundError, SecretBoxError } from '../db/errors.js';
import type { Store } from '../db/store.js';
import { normaliseMasterUrl } from '../ingest/master-url.js';
import { tunnelContextFromStore } from '../persistence/restore.js';
import type { EndpointDefinition, Runtime } from '../runtime/runtime.js';

export interface RegistryOptions {
  repo: EndpointsRepo;
  store: Pick<Store, 'loadTunnels'>;
  runtime: Runtime;
  /** Writes everything queued (the persister's drain), before an endpoint's rows are deleted. */
  flushPending?: () => Promise<void>;
}

export class EndpointRegistry {
  private readonly repo: EndpointsRepo;
  private readonly store: Pick<Store, 'loadTunnels'>;
  private readonly runtime: Runtime;
  private readonly flushPending: () => Promise<void>;
  /** The rows as last written, by id (never holds a key). */
  private readonly rows = new Map<number, Endpoint>();

  constructor(options: RegistryOptions) {
    this.repo = options.repo;
    this.store = options.store;
    this.runtime = options.runtime;
    this.flushPending = options.flushPending ?? (async () => {});
  }

  /**
   * Start-up: an actor for every registered endpoint, with its tunnels restored from the database. An API key that
   * cannot be opened (the secret key changed) does not stop the others: that endpoint runs without a key, the
   * master answers 401 and the endpoint shows `authFailed` until the key is entered again (PATCH apiKey).
   */
  async restoreAll(): Promise<{ endpoints: number; unreadableKeys: number[] }> {
    const unreadableKeys: number[] = [];
    for (const row of await this.repo.list()) {
      const stored = await this.store.loadTunnels(row.id);
      this.rows.set(row.id, row);
      let apiKey = '';
      try {
        apiKey = await this.repo.revealApiKey(row.id);
      } catch (error) {
        if (!(error instanceof SecretBoxError)) throw error;
        unreadableKeys.push(row.id);
      }
      this.runtime.addEndpoint({ ...this.toDefinition(row), apiKey }, { tunnels: stored.map(tunnelContextFromStore) });
    }
    return { endpoints: this.rows.size, unreadableKeys };
  }

  /**
   * Config-file seeding (before `restoreAll`, on the database only): adds what is missing, updates the URL, key and
   * TLS choice of what exists (by name). `enabled` is applied only when an endpoint is created, so a disable done
   * through the API survives a restart.
   */
  async seed(seeds: readonly EndpointSeed[]): Promise<void> {
    for (const seed of seeds) {
      const url = normaliseMasterUrl(seed.url);
      const existing = await this.repo.getByName(seed.name);
      if (!existing) await this.repo.create({ ...seed, url });
      else await this.repo.update(existing.id, { url, apiKey: seed.apiKey, insecureTls: seed.insecureTls ?? false });
    }
  }

  list(): Endpoint[] {
    return [...this.rows.values()].sort((a, b) => a.id - b.id);
  }

  get(id: number): Endpoint | null {
    return this.rows.get(id) ?? null;
  }

  getByName(name: string): Endpoint | null {
    for (const row of this.rows.values()) if (row.name === name) return row;
    return null;
  }

  async create(input: NewEndpoint): Promise<Endpoint> {
    const row = await this.repo.create({ ...input, url: normaliseMasterUrl(input.url), insecureTls: input.insecureTls ?? false });
    this.rows.set(row.id, row);
    this.runtime.addEndpoint({ ...this.toDefinition(row), apiKey: input.apiKey });
    return row;
  }

  /** Changes name, URL, key or TLS choice; a changed URL, key or TLS choice reconnects. */
  async update(id: number, changes: EndpointChanges): Promise<Endpoint> {
    this.require(id);
    const normalised = changes.url === undefined ? changes : { ...changes, url: normaliseMasterUrl(changes.url) };
    const row = await this.repo.update(id, normalised);
    this.rows.set(id, row);
    this.runtime.updateEndpoint(await this.definitionOf(row));
    return row;
  }

  async setEnabled(id: number, enabled: boolean): Promise<Endpoint> {
    this.require(id);
    const row = await this.repo.setEnabled(id, enabled);
    this.rows.set(id, row);
    this.runtime.updateEndpoint(await this.definitionOf(row));
    return row;
  }

  /** Closes the stream and opens a new one at once (backoff reset). */
  reconnect(id: number): Endpoint {
    const row = this.require(id);
    this.runtime.reconnect(id);
    return row;
  }

  /**
   * Stops the actor, writes what was queued, deletes the row and its history (see the file comment). If the
   * database fails half-way the endpoint stays listed (stopped) and the removal can be retried.
   */
  async remove(id: number): Promise<void> {
    this.require(id);
    this.runtime.removeEndpoint(id);
    await this.flushPending();
    await this.repo.delete(id);
    this.rows.delete(id);
  }

  private require(id: number): Endpoint {
    const row = this.rows.get(id);
    if (!row) throw new EndpointNotFoundError(id);
    return row;
  }

  private toDefinition(row: Endpoint): Omit<EndpointDefinition, 'apiKey'> {
    return { id: row.id, name: row.name, baseUrl: normaliseMasterUrl(row.url), insecureTls: row.insecureTls, enabled: row.enabled };
  }

  private async definitionOf(row: Endpoint): Promise<EndpointDefinition> {
    return { ...this.toDefinition(row), apiKey: await this.repo.revealApiKey(row.id) };
  }
}
