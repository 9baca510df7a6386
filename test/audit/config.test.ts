/** The audit flags of `keyward serve` and `keyward engine`: defaults, parsing, one-line errors. */
import { describe, expect, it } from 'vitest';
import { auditConfigFromFlags, defaultAuditConfig, parseSize } from '../../engine/audit/config.ts';
import { parseClusterEngineArgs } from '../../engine/cluster/cli.ts';

describe('audit settings', () => {
  it('default to on, not required, every 1000 records or 5 s, 64 MiB segments', () => {
    expect(defaultAuditConfig()).toEqual({
      enabled: true,
      required: false,
      checkpointRecords: 1000,
      checkpointIntervalMs: 5000,
      segmentBytes: 64 * 1024 * 1024,
      stdout: false,
    });
  });

  it('parse the flags', () => {
    expect(
      auditConfigFromFlags(
        {
          auditRequired: true,
          auditCheckpointRecords: '50',
          auditCheckpointInterval: '2s',
          auditSegmentSize: '8MiB',
          auditDir: '/var/audit',
        },
        defaultAuditConfig(),
      ),
    ).toMatchObject({
      required: true,
      checkpointRecords: 50,
      checkpointIntervalMs: 2000,
      segmentBytes: 8 << 20,
      dir: '/var/audit',
    });
    expect(auditConfigFromFlags({ audit: false }, defaultAuditConfig()).enabled).toBe(false);
    expect(parseSize('512k')).toBe(512 * 1024);
    expect(parseSize('1048576')).toBe(1 << 20);
  });

  it('refuse bad values with one-line messages', () => {
    const bad = (flags: Parameters<typeof auditConfigFromFlags>[0]) => () =>
      auditConfigFromFlags(flags, defaultAuditConfig());
    expect(bad({ auditCheckpointRecords: '0' })).toThrow(
      /^--audit-checkpoint-records must be a positive integer/,
    );
    expect(bad({ auditCheckpointRecords: '1e3' })).toThrow(/positive integer/);
    expect(bad({ auditCheckpointInterval: '5' })).toThrow(/invalid duration/);
    expect(bad({ auditCheckpointInterval: '10ms' })).toThrow(/at least 100ms/);
    expect(bad({ auditSegmentSize: '12zz' })).toThrow(/invalid size/);
    expect(bad({ auditSegmentSize: '1k' })).toThrow(/at least 4KiB/);
    expect(bad({ audit: false, auditRequired: true })).toThrow(/exclude each other/);
  });

  it('the cluster engine takes them too, with stdout on', () => {
    expect(parseClusterEngineArgs(['--audit-required', '--audit-dir', '/a'])?.audit).toMatchObject({
      enabled: true,
      required: true,
      stdout: true,
      dir: '/a',
    });
    expect(parseClusterEngineArgs(['--no-audit'])?.audit?.enabled).toBe(false);
    expect(parseClusterEngineArgs([])?.audit).toBeUndefined(); // the engine's defaults apply
  });
});
