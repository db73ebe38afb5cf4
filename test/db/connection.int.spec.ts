/** Server mode: needs TEST_DATABASE_URL (the embedded mode has its own file, embedded.int.spec.ts). */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/connection.js';

const url = process.env['TEST_DATABASE_URL'];

describe.runIf(url)('server database', () => {
  it('creates the schema and pins every pooled connection to it', async () => {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const db = await openDatabase({ url: url!, schema, max: 3 });
    try {
      expect(db.kind).toBe('server');
      expect(db.location).toContain(`schema ${schema}`);
      // Enough concurrent queries that all three connections answer.
      const answers = await Promise.all(
        Array.from({ length: 12 }, () => db.sql<{ schema: string; pid: number }[]>`
          SELECT current_schema() AS schema, pg_backend_pid() AS pid, pg_sleep(0.02)`),
      );
      expect(new Set(answers.map(([row]) => row?.pid)).size).toBe(3);
      expect(new Set(answers.map(([row]) => row?.schema))).toEqual(new Set([schema]));
      const [big] = await db.sql<{ n: number }[]>`SELECT 9007199254740991::bigint AS n`;
      expect(big?.n).toBe(Number.MAX_SAFE_INTEGER); // int8 arrives as a number
    } finally {
      await db.sql.unsafe(`DROP SCHEMA "${schema}" CASCADE`);
      await db.close();
    }
  });

  it('refuses a schema name it would have to quote', async () => {
    await expect(openDatabase({ url: url!, schema: 'x"; DROP TABLE y; --' })).rejects.toThrow(/invalid schema name/);
  });

  it('never shows the password in its location', async () => {
    const withPassword = new URL(url!);
    withPassword.password = 'hunter2';
    // Trust auth ignores the password, so this connects.
    const db = await openDatabase({ url: withPassword.toString() });
    try {
      expect(db.location).not.toContain('hunter2');
    } finally {
      await db.close();
    }
  });
});
