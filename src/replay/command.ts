/** `tunnelpulse replay <file>... [--endpoint NAME] [--json]` */
import type { Command } from 'commander';
import { replayFiles } from './replay.js';
import type { ReplayReport } from './report.js';

export function registerReplayCommand(program: Command): void {
  program
    .command('replay')
    .description('Feed NodePass SSE captures, timestamped captures or TunnelPulse journals through the actors and report')
    .argument('<file...>', 'input files (*.sse, *.timestamped.txt, journal *.jsonl)')
    .option('--endpoint <name>', 'treat all files as consecutive connections of one endpoint')
    .option('--json', 'print the report as one JSON object')
    .action((files: string[], opts: { endpoint?: string; json?: boolean }) => {
      const report = replayFiles(files, { endpoint: opts.endpoint });
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
