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
 *    owns; an operator who wants the history kept disables the endpoint instead;
 *  - with leases on (`leased`), the rows are every endpoint's but actors run only for those this process holds: the
 *    `LeaseKeeper` (lease-keeper.ts) calls `attach`/`detach` as leases are won and lost, and `refresh` to pick up
 *    rows that other processes added, changed or removed.
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
  /** Leases on: actors only for the endpoints attached by the lease keeper (default off: every endpoint). */
  leased?: boolean;
  /** Leases on: an endpoint was created or enabled here, so the keeper should claim soon rather than at its next round. */
  onEndpointsChanged?: () => void;
  /** Leases on: who holds an endpoint now (`LeaseRepo.holder`), and how long a removal waits for another holder to let go. */
  leaseHolder?: (id: number) => Promise<string | null>;
  leaseReleaseWaitMs?: number;
}

export class EndpointRegistry {
  private readonly repo: EndpointsRepo;
  private readonly store: Pick<Store, 'loadTunnels'>;
  private readonly runtime: Runtime;
  private readonly flushPending: () => Promise<void>;
  /** The rows as last written, by id (never holds a key). */
  private readonly rows = new Map<number, Endpoint>();
  private readonly leased: boolean;
  private onEndpointsChanged: () => void;
  /** Leases on: the endpoints whose actor runs here. */
  private readonly attachedIds = new Set<number>();
  private readonly leaseHolder: (id: number) => Promise<string | null>;
  private readonly leaseReleaseWaitMs: number;

  constructor(options: RegistryOptions) {
    this.repo = options.repo;
    this.store = options.store;
    this.runtime = options.runtime;
    this.flushPending = options.flushPending ?? (async () => {});
    this.leased = options.leased ?? false;
    this.onEndpointsChanged = options.onEndpointsChanged ?? (() => {});
    this.leaseHolder = options.leaseHolder ?? (async () => null);
    this.leaseReleaseWaitMs = options.leaseReleaseWaitMs ?? 0;
  }

  /** Leases on: who to tell when an endpoint was created or enabled here (the keeper, created after the registry). */
  set endpointsChanged(listener: () => void) {
    this.onEndpointsChanged = listener;
  }

  /** Whether this process runs the endpoint's actor (always, with leases off). */
  private runsHere(id: number): boolean {
    return !this.leased || this.attachedIds.has(id);
  }

  /**
   * Start-up: an actor for every registered endpoint, with its tunnels restored from the database. An API key that
   * cannot be opened (the secret key changed) does not stop the others: that endpoint runs without a key, the
   * master answers 401 and the endpoint shows `authFailed` until the key is entered again (PATCH apiKey).
   */
  async restoreAll(): Promise<{ endpoints: number; unreadableKeys: number[] }> {
    if (this.leased) {
      // Actors come with the leases (`attach`), restored the same way.
      await this.refresh();
      return { endpoints: this.rows.size, unreadableKeys: [] };
    }
    const unreadableKeys: number[] = [];
    for (const row of await this.repo.list()) {
      this.rows.set(row.id, row);
      if (!(await this.startActor(row))) unreadableKeys.push(row.id);
    }
    return { endpoints: this.rows.size, unreadableKeys };
  }

  /** Starts the endpoint's actor with its tunnels restored from the database; false if its API key could not be opened. */
  private async startActor(row: Endpoint): Promise<boolean> {
    const stored = await this.store.loadTunnels(row.id);
    let apiKey = '';
    let readable = true;
    try {
      apiKey = await this.repo.revealApiKey(row.id);
    } catch (error) {
      if (!(error instanceof SecretBoxError)) throw error;
      readable = false;
    }
    this.runtime.addEndpoint({ ...this.toDefinition(row), apiKey }, { tunnels: stored.map(tunnelContextFromStore) });
    return readable;
  }

  // ---- leases (lease-keeper.ts) -------------------------------------------------------------------------

  /**
   * Leases on: re-reads the rows, so endpoints added, changed or removed by other processes show here; an attached
   * endpoint whose row changed gets its new definition (a new URL, key or TLS choice reconnects).
   */
  async refresh(): Promise<void> {
    const listed = await this.repo.list();
    const seen = new Set<number>();
    for (const row of listed) {
      seen.add(row.id);
      const before = this.rows.get(row.id);
      this.rows.set(row.id, row);
      if (this.attachedIds.has(row.id) && before && before.updatedAt !== row.updatedAt) {
        this.runtime.updateEndpoint(await this.definitionOf(row));
      }
    }
    for (const id of [...this.rows.keys()]) if (!seen.has(id) && !this.attachedIds.has(id)) this.rows.delete(id);
  }

  /**
   * Leases on: this process now holds the endpoint: start its actor, restored from the database as at start-up.
   * False if its API key could not be opened (the actor runs and shows `authFailed`, as at start-up).
   */
  async attach(id: number): Promise<boolean> {
    if (this.attachedIds.has(id)) return true;
    const row = await this.repo.get(id);
    if (!row) return true; // removed meanwhile: nothing to run
    this.rows.set(id, row);
    this.attachedIds.add(id);
    return this.startActor(row);
  }

  /** Leases on: the lease is gone (lost or given up): stop the actor. What it queued stays queued and is written. */
  detach(id: number): void {
    if (!this.attachedIds.delete(id)) return;
    this.runtime.removeEndpoint(id);
  }

  /** Leases on: the endpoints whose actor runs here, ascending. */
  attached(): number[] {
    return [...this.attachedIds].sort((a, b) => a - b);
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
    if (this.leased) this.onEndpointsChanged(); // whoever has room claims it
    else this.runtime.addEndpoint({ ...this.toDefinition(row), apiKey: input.apiKey });
    return row;
  }

  /** Changes name, URL, key or TLS choice; a changed URL, key or TLS choice reconnects. */
  async update(id: number, changes: EndpointChanges): Promise<Endpoint> {
    this.require(id);
    const normalised = changes.url === undefined ? changes : { ...changes, url: normaliseMasterUrl(changes.url) };
    const row = await this.repo.update(id, normalised);
    this.rows.set(id, row);
    // Leases on, held elsewhere: the holder picks the change up at its next round (`refresh`).
    if (this.runsHere(id)) this.runtime.updateEndpoint(await this.definitionOf(row));
    return row;
  }

  async setEnabled(id: number, enabled: boolean): Promise<Endpoint> {
    this.require(id);
    const row = await this.repo.setEnabled(id, enabled);
    this.rows.set(id, row);
    // Leases on: a disabled endpoint's lease is not renewed, so its holder detaches it at the next round.
    if (this.runsHere(id)) this.runtime.updateEndpoint(await this.definitionOf(row));
    if (this.leased && enabled) this.onEndpointsChanged();
    return row;
  }

  /** Closes the stream and opens a new one at once (backoff reset). */
  reconnect(id: number): Endpoint {
    const row = this.require(id);
    if (this.runsHere(id)) this.runtime.reconnect(id);
    return row;
  }

  /**
   * Stops the actor, writes what was queued, deletes the row and its history (see the file comment). If the
   * database fails half-way the endpoint stays listed (stopped) and the removal can be retried.
   */
  async remove(id: number): Promise<void> {
    this.require(id);
    if (this.leased && !this.attachedIds.has(id)) await this.letHolderGo(id);
    if (this.runsHere(id)) this.runtime.removeEndpoint(id);
    this.attachedIds.delete(id);
    await this.flushPending();
    await this.repo.delete(id);
    this.rows.delete(id);
  }

  /**
   * Leases on, removing an endpoint another process holds: deleting the row under it would make the writes it
   * still has queued fail against the missing row. So disable it first: the holder's next round stops the actor,
   * writes its queue and releases the lease; wait for that (bounded: a partitioned holder never answers).
   */
  private async letHolderGo(id: number): Promise<void> {
    if ((await this.leaseHolder(id)) === null) return;
    if (this.rows.get(id)?.enabled) this.rows.set(id, await this.repo.setEnabled(id, false));
    const deadline = Date.now() + this.leaseReleaseWaitMs;
    while ((await this.leaseHolder(id)) !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
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
