/** `tunnelpulse replay <file>... [--endpoint NAME] [--json] [--db <url|embedded[:dir]> [--db-schema NAME]]` */
import type { Command } from 'commander';
import { loadConfig, secretKeyFile, embeddedDataDir } from '../config.js';
import { openDatabase, type DatabaseOptions } from '../db/connection.js';
import { SecretBox } from '../db/secret-box.js';
import { replayFiles } from './replay.js';
import { replayFilesIntoDatabase } from './replay-db.js';
import type { ReplayReport } from './report.js';

/**
 * Where `--db` points: a PostgreSQL URL, or `embedded` (the service's embedded database, `<data dir>/pglite`),
 * or `embedded:<folder>` (a PGlite data folder of its own).
 */
export function databaseTarget(target: string, schema: string | undefined, embeddedDefault: string): DatabaseOptions {
  if (/^postgres(ql)?:\/\//.test(target)) return { url: target, ...(schema ? { schema } : {}) };
  if (schema) throw new Error('--db-schema applies to a PostgreSQL server URL only');
  if (target === 'embedded') return { dataDir: embeddedDefault };
  if (target.startsWith('embedded:') && target.length > 'embedded:'.length) return { dataDir: target.slice('embedded:'.length) };
  throw new Error(`--db expects postgres://…, embedded or embedded:<folder>, got "${target}"`);
}

export function registerReplayCommand(program: Command): void {
  program
    .command('replay')
    .description('Feed NodePass SSE captures, timestamped captures or TunnelPulse journals through the actors and report')
    .argument('<file...>', 'input files (*.sse, *.timestamped.txt, journal *.jsonl)')
    .option('--endpoint <name>', 'treat all files as consecutive connections of one endpoint')
    .option('--json', 'print the report as one JSON object')
    .option('--db <target>', 'also write into a database: postgres://…, embedded (the service\'s), or embedded:<folder>')
    .option('--db-schema <name>', 'with a server URL: the schema to write into (created if missing)')
    .action(async (files: string[], opts: { endpoint?: string; json?: boolean; db?: string; dbSchema?: string }) => {
      let report: ReplayReport;
      if (opts.db) {
        // The same configuration as the service (secret key, daily log cap, batch settings).
        const config = loadConfig();
        const db = await openDatabase(databaseTarget(opts.db, opts.dbSchema, embeddedDataDir(config)));
        try {
          const result = await replayFilesIntoDatabase(files, {
            endpoint: opts.endpoint,
            db,
            secrets: SecretBox.fromConfig({ key: config.secretKey ?? undefined, keyFile: secretKeyFile(config) }),
            logDailyCap: config.logDailyCap,
            settings: { logBatchSize: config.logBatchSize, logFlushMs: config.logFlushMs, stateFlushMs: config.stateFlushMs },
          });
          report = result.report;
          const s = result.stats;
          process.stderr.write(
            `written to ${db.location}: endpoints ${result.endpointIds.join(', ')}; ${s.databaseWrites.statements} statements, ` +
              `${s.databaseWrites.rows} rows changed, ${s.logRowsCut} log lines cut by the daily cap, ${s.databaseErrors} errors\n`,
          );
        } finally {
          await db.close();
        }
      } else {
        report = replayFiles(files, { endpoint: opts.endpoint });
      }
      process.stdout.write(opts.json ? JSON.stringify(report) + '\n' : formatReport(report));
    });
}

const bytes = (n: number): string => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

export function formatReport(report: ReplayReport): string {
  const lines: string[] = [];
  const e = report.events;
  lines.push(`events: ${e.total} (${Object.entries(e.byType).map(([k, v]) => `${k} ${v}`).join(', ')}), rejected ${e.rejected}`);
  for (const [reason, n] of Object.entries(e.rejectedReasons)) lines.push(`  rejected ${n}× ${reason}`);
  for (const ep of report.endpoints) {
    lines.push('', `endpoint ${ep.name}  master ${ep.masterId || '?'}  connections ${ep.connections}`);
    for (const o of ep.offline) lines.push(`  offline ${o.from} → ${o.to} (${o.reason})`);
    if (ep.disconnectedSince) lines.push(`  disconnected since ${ep.disconnectedSince}`);
    for (const t of ep.tunnels) {
      const tr = t.traffic;
      lines.push(
        `  ${t.instanceId} ${t.alias || '-'} ${t.type} ${t.deleted ? 'deleted' : t.status}  traffic tcp ${bytes(tr.tcprx)}/${bytes(tr.tcptx)} udp ${bytes(tr.udprx)}/${bytes(tr.udptx)}  logs ${t.logLines}  status changes ${t.statusChanges.length}`,
      );
    }
  }
  return lines.join('\n') + '\n';
}
