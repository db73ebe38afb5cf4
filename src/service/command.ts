/** `tunnelpulse start`, `tunnelpulse migrate`, `tunnelpulse endpoints add|list|remove`. */
import type { Command } from 'commander';
import { pino } from 'pino';
import { loadConfig, secretKeyFile } from '../config.js';
import { EndpointsRepo } from '../db/endpoints-repo.js';
import { migrate } from '../db/migrate.js';
import { SecretBox } from '../db/secret-box.js';
import { normaliseMasterUrl } from '../ingest/master-url.js';
import { openServiceDatabase, startService } from './service.js';

export function registerServiceCommands(program: Command): void {
  program
    .command('start')
    .description('Run the service (embedded database unless DATABASE_URL is set)')
    .option('--demo', 'also run a NodePass simulator and watch it as endpoint "demo"')
    .option('--host <host>', 'listen address (default 127.0.0.1; others need TUNNELPULSE_TOKEN)')
    .option('--port <port>', 'listen port (default 8080)')
    .option('--data-dir <dir>', 'data folder for the embedded database, key file and spill (default ./data)')
    .option('--config <file>', 'JSON file with endpoints to register at start-up')
    .option('--journal <file>', 'record everything received, replayable with `tunnelpulse replay`')
    .action(async (opts: { demo?: boolean; host?: string; port?: string; dataDir?: string; config?: string; journal?: string }) => {
      const base = loadConfig();
      const config = {
        ...base,
        demo: Boolean(opts.demo),
        host: opts.host ?? base.host,
        port: opts.port ? Number(opts.port) : base.port,
        dataDir: opts.dataDir ?? base.dataDir,
        configFile: opts.config ?? base.configFile,
        journalPath: opts.journal ?? base.journalPath,
      };
      const log = pino({ level: config.logLevel });
      const service = await startService(config, log);
      process.stdout.write(`TunnelPulse on ${service.address}  (try ${service.address}/api/endpoints)\n`);
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) {
          // A second Ctrl-C is an operator insisting: leave now (what is queued in memory is lost, spills stay).
          // A repeated SIGTERM (supervisors often send several) must not cut the flush short.
          if (signal === 'SIGINT') process.exit(130);
          log.warn({ signal }, 'already stopping: still flushing');
          return;
        }
        stopping = true;
        log.info({ signal }, 'stopping: closing streams and flushing');
        try {
          await service.stop();
          process.exit(0);
        } catch (error) {
          log.error({ err: error }, 'flush on shutdown failed; queued data stays in the spill files');
          process.exit(1);
        }
      };
      process.on('SIGTERM', () => void stop('SIGTERM'));
      process.on('SIGINT', () => void stop('SIGINT'));
    });

  program
    .command('migrate')
    .description('Apply database migrations (safe to run twice)')
    .action(async () => {
      const db = await openServiceDatabase(loadConfig());
      const report = await migrate(db.sql);
      process.stdout.write(JSON.stringify(report) + '\n');
      await db.close();
    });

  const endpoints = program.command('endpoints').description('Manage the NodePass masters TunnelPulse watches');
  const withRepo = async <T>(fn: (repo: EndpointsRepo) => Promise<T>): Promise<T> => {
    const config = loadConfig();
    const db = await openServiceDatabase(config);
    try {
      return await fn(new EndpointsRepo(db, SecretBox.fromConfig({ key: config.secretKey ?? undefined, keyFile: secretKeyFile(config) })));
    } finally {
      await db.close();
    }
  };
  endpoints
    .command('add')
    .argument('<name>')
    .argument('<url>', 'the master API base, e.g. http://host:9090/api/v1 (/v1 is added when missing)')
    .requiredOption('--api-key-env <var>', 'environment variable holding the API key (keeps it out of shell history)')
    .option('--insecure-tls', 'accept a self-signed certificate')
    .action(async (name: string, url: string, opts: { apiKeyEnv: string; insecureTls?: boolean }) => {
      const apiKey = process.env[opts.apiKeyEnv];
      if (!apiKey) throw new Error(`environment variable ${opts.apiKeyEnv} is empty`);
      const created = await withRepo((repo) => repo.create({ name, url: normaliseMasterUrl(url), apiKey, insecureTls: Boolean(opts.insecureTls) }));
      process.stdout.write(`added endpoint ${created.id} ${created.name}\n`);
    });
  endpoints.command('list').action(async () => {
    const list = await withRepo((repo) => repo.list());
    for (const e of list) process.stdout.write(`${e.id}\t${e.name}\t${e.url}\t${e.enabled ? 'enabled' : 'disabled'}\n`);
  });
  endpoints
    .command('remove')
    .argument('<id>')
    .action(async (id: string) => {
      const removed = await withRepo((repo) => repo.delete(Number(id)));
      process.stdout.write(removed ? `removed endpoint ${id}\n` : `no endpoint ${id}\n`);
      if (!removed) process.exitCode = 1;
    });
}
