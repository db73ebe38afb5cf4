/**
 * `tunnelpulse`: the command line. Each subcommand lives beside the part it drives and registers itself here.
 */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { destination, pino } from 'pino';
import { unhandledRejectionPolicy } from '../db/driver-faults.js';
import { registerBenchCommand } from '../bench/command.js';
import { registerReplayCommand } from '../replay/command.js';
import { registerServiceCommands } from '../service/command.js';
import { registerSimCommand } from '../sim/command.js';
import { applyV8Tuning } from '../runtime/v8-tuning.js';

applyV8Tuning();

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('tunnelpulse')
    .description('Real-time monitoring backend for NodePass tunnel fleets')
    .version(pkg.version);
  registerServiceCommands(program);
  registerReplayCommand(program);
  registerSimCommand(program);
  registerBenchCommand(program);
  return program;
}

// One known driver fault is absorbed and counted; any other unhandled rejection still ends the process (exit 1).
process.on('unhandledRejection', unhandledRejectionPolicy(pino({ name: 'tunnelpulse' }, destination(2))));

await buildProgram().parseAsync(process.argv);
