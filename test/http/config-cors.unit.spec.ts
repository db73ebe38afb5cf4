/** The HTTP settings read from the environment: CORS origins. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';

describe('TUNNELPULSE_CORS_ORIGINS', () => {
  it('is off by default and a trimmed list when set', () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(loadConfig({ TUNNELPULSE_CORS_ORIGINS: ' https://a.example , https://b.example,, ' }).corsOrigins).toEqual(['https://a.example', 'https://b.example']);
  });
});
