/**
 * An exclusive lock on the embedded database's data folder.
 *
 * PGlite itself does not stop a second instance from opening a folder that is in use (measured: a second
 * `PGlite.create({ dataDir })` on an open folder succeeds), and two backends writing the same files corrupt them.
 * So we take a lock file before starting PGlite: created with O_EXCL, holding the owner's pid and host.
 *
 * A lock left by a process that died (kill -9, power loss) is stale and is taken over:
 *  - its pid no longer exists on this host, or
 *  - its pid is our own pid but this process does not hold it (containers restart with the same small pid).
 * A lock written on another host (shared filesystem) is never taken over: we cannot see that host's processes.
 */
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DataFolderInUseError } from './errors.js';

export const LOCK_FILE_NAME = 'tunnelpulse.lock';

interface LockHolder {
  pid: number;
  hostname: string;
  startedAt: string;
}

export interface DataFolderLock {
  readonly path: string;
  release(): void;
}

/** Lock files held by this process; a second `openDatabase` on the same folder fails fast on it. */
const heldInThisProcess = new Set<string>();

export function acquireDataFolderLock(dataDir: string): DataFolderLock {
  const lockPath = join(dataDir, LOCK_FILE_NAME);
  if (heldInThisProcess.has(lockPath)) {
    throw new DataFolderInUseError(`the data folder ${dataDir} is already open in this process`);
  }
  const me: LockHolder = { pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() };
  const content = `${JSON.stringify(me)}\n`;

  // Two attempts: the second follows the removal of a stale lock. Losing that race twice means another
  // process is starting on the same folder right now, which is exactly "in use".
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lockPath, content, { flag: 'wx', mode: 0o644 });
      heldInThisProcess.add(lockPath);
      return {
        path: lockPath,
        release() {
          if (!heldInThisProcess.delete(lockPath)) return;
          // Remove only our own lock: never one a successor took over after we were considered dead.
          if (readLockFile(lockPath) === content) rmSync(lockPath, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = parseHolder(readLockFile(lockPath));
    if (!holder && isYoung(lockPath)) {
      // Unreadable but just created: another process is between creating and writing it.
      throw new DataFolderInUseError(`the data folder ${dataDir} is being opened by another process right now`);
    }
    if (holder && !isStale(holder)) {
      throw new DataFolderInUseError(
        `the data folder ${dataDir} is in use by process ${holder.pid} on ${holder.hostname} (since ${holder.startedAt}); ` +
          `stop that process, or delete ${lockPath} if you are sure it is gone`,
      );
    }
    rmSync(lockPath, { force: true });
  }
  throw new DataFolderInUseError(`the data folder ${dataDir} is being opened by another process right now`);
}

function readLockFile(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function parseHolder(text: string | null): LockHolder | null {
  if (text === null) return null;
  try {
    const value = JSON.parse(text) as Partial<LockHolder>;
    if (typeof value.pid === 'number' && typeof value.hostname === 'string') {
      return { pid: value.pid, hostname: value.hostname, startedAt: String(value.startedAt ?? 'unknown') };
    }
  } catch {
    // A torn or foreign file: treated as stale below.
  }
  return null;
}

function isYoung(path: string): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs < 5_000;
  } catch {
    return false;
  }
}

function isStale(holder: LockHolder): boolean {
  if (holder.hostname !== hostname()) return false;
  // Our own pid but not in `heldInThisProcess`: a previous incarnation of this process id left it behind.
  if (holder.pid === process.pid) return true;
  return !processExists(holder.pid);
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
