/**
 * The endpoint registry: NodePass masters the service watches.
 *
 * API keys are sealed by the SecretBox before they reach SQL and are never selected by list/get: an `Endpoint`
 * cannot leak a key into a log line or an HTTP response because it does not hold one. The connector asks for the
 * plaintext explicitly with `revealApiKey(id)`.
 */
import type { MasterInfo } from '../../actors/model.js';
import type { Database, Sql } from './connection.js';
import { EndpointNameTakenError, EndpointNotFoundError } from './errors.js';
import type { SecretBox } from './secret-box.js';

export interface Endpoint {
  id: number;
  name: string;
  url: string;
  insecureTls: boolean;
  enabled: boolean;
  masterId: string | null;
  masterInfo: MasterInfo | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewEndpoint {
  name: string;
  url: string;
  apiKey: string;
  insecureTls?: boolean;
  enabled?: boolean;
}

export interface EndpointChanges {
  name?: string;
  url?: string;
  apiKey?: string;
  insecureTls?: boolean;
}

interface EndpointRow {
  id: number;
  name: string;
  url: string;
  insecure_tls: boolean;
  enabled: boolean;
  master_id: string | null;
  master_info: MasterInfo | null;
  created_at: Date;
  updated_at: Date;
}

const UNIQUE_VIOLATION = '23505';

export class EndpointsRepo {
  readonly #sql: Sql;
  readonly #secrets: SecretBox;

  constructor(db: Pick<Database, 'sql'>, secrets: SecretBox) {
    this.#sql = db.sql;
    this.#secrets = secrets;
  }

  async create(input: NewEndpoint): Promise<Endpoint> {
    const sql = this.#sql;
    const [row] = await this.#uniqueName(
      input.name,
      sql<EndpointRow[]>`
        INSERT INTO endpoints (name, url, api_key_enc, insecure_tls, enabled)
        VALUES (${input.name}, ${input.url}, ${this.#secrets.seal(input.apiKey)},
                ${input.insecureTls ?? false}, ${input.enabled ?? true})
        RETURNING ${columns(sql)}`,
    );
    return toEndpoint(row!);
  }

  /** Changes the given fields; throws EndpointNotFoundError if the endpoint does not exist. */
  async update(id: number, changes: EndpointChanges): Promise<Endpoint> {
    const sql = this.#sql;
    const assignments: Record<string, unknown> = {};
    if (changes.name !== undefined) assignments['name'] = changes.name;
    if (changes.url !== undefined) assignments['url'] = changes.url;
    if (changes.apiKey !== undefined) assignments['api_key_enc'] = this.#secrets.seal(changes.apiKey);
    if (changes.insecureTls !== undefined) assignments['insecure_tls'] = changes.insecureTls;
    if (Object.keys(assignments).length === 0) return this.#require(id, await this.get(id));
    const [row] = await this.#uniqueName(
      changes.name ?? '',
      sql<EndpointRow[]>`
        UPDATE endpoints SET ${sql(assignments)}, updated_at = now()
        WHERE id = ${id}
        RETURNING ${columns(sql)}`,
    );
    return this.#require(id, row ? toEndpoint(row) : null);
  }

  async setEnabled(id: number, enabled: boolean): Promise<Endpoint> {
    const sql = this.#sql;
    const [row] = await sql<EndpointRow[]>`
      UPDATE endpoints SET enabled = ${enabled}, updated_at = now()
      WHERE id = ${id}
      RETURNING ${columns(sql)}`;
    return this.#require(id, row ? toEndpoint(row) : null);
  }

  enable(id: number): Promise<Endpoint> {
    return this.setEnabled(id, true);
  }

  disable(id: number): Promise<Endpoint> {
    return this.setEnabled(id, false);
  }

  /** Records what `/info` or the API-key record says about the master. */
  async setMasterInfo(id: number, info: MasterInfo): Promise<void> {
    const result = await this.#sql`
      UPDATE endpoints SET master_id = ${info.masterId}, master_info = ${this.#sql.json(info as never)},
                           updated_at = now()
      WHERE id = ${id}`;
    if (result.count === 0) throw new EndpointNotFoundError(id);
  }

  /** Removes the endpoint and, by cascade, its tunnels, logs, traffic and history. False if it did not exist. */
  async delete(id: number): Promise<boolean> {
    const result = await this.#sql`DELETE FROM endpoints WHERE id = ${id}`;
    return result.count > 0;
  }

  async get(id: number): Promise<Endpoint | null> {
    const sql = this.#sql;
    const [row] = await sql<EndpointRow[]>`SELECT ${columns(sql)} FROM endpoints WHERE id = ${id}`;
    return row ? toEndpoint(row) : null;
  }

  async getByName(name: string): Promise<Endpoint | null> {
    const sql = this.#sql;
    const [row] = await sql<EndpointRow[]>`SELECT ${columns(sql)} FROM endpoints WHERE name = ${name}`;
    return row ? toEndpoint(row) : null;
  }

  async list(): Promise<Endpoint[]> {
    const sql = this.#sql;
    const rows = await sql<EndpointRow[]>`SELECT ${columns(sql)} FROM endpoints ORDER BY id`;
    return rows.map(toEndpoint);
  }

  /** The plaintext API key, for the connector's `X-API-Key` header only. Never log or return it. */
  async revealApiKey(id: number): Promise<string> {
    const [row] = await this.#sql<{ api_key_enc: string }[]>`SELECT api_key_enc FROM endpoints WHERE id = ${id}`;
    if (!row) throw new EndpointNotFoundError(id);
    return this.#secrets.open(row.api_key_enc);
  }

  #require(id: number, endpoint: Endpoint | null): Endpoint {
    if (!endpoint) throw new EndpointNotFoundError(id);
    return endpoint;
  }

  async #uniqueName<T>(name: string, query: Promise<T>): Promise<T> {
    try {
      return await query;
    } catch (error) {
      if ((error as { code?: string }).code === UNIQUE_VIOLATION) throw new EndpointNameTakenError(name);
      throw error;
    }
  }
}

/** Every column but the sealed key. */
function columns(sql: Sql) {
  return sql`id, name, url, insecure_tls, enabled, master_id, master_info, created_at, updated_at`;
}

function toEndpoint(row: EndpointRow): Endpoint {
  return {
    id: row.id,
    name: row.name,
    url: row.url,
    insecureTls: row.insecure_tls,
    enabled: row.enabled,
    masterId: row.master_id,
    masterInfo: row.master_info,
    createdAt: row.created_at.getTime(),
    updatedAt: row.updated_at.getTime(),
  };
}
