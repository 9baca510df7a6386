/**
 * Audit records of the cluster engine (issue #13): a real engine process, real TokenReview and
 * SubjectAccessReview, and callers that are real ServiceAccounts. Every record names the
 * ServiceAccount that made the call (TokenReview username, uid and groups), refused calls
 * included (403 with the identity, 401 without one); the replica's chain is named after it and
 * goes to stdout (one JSON line per record) and, with --audit-dir, to segment files that verify
 * with the master key from the operator's Secret.
 */

import type { KeyObject } from 'node:crypto';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { readLines, removeDir, segmentFiles, verifyDir } from '../audit/fixtures.ts';
import {
  applyKeyCrd,
  b64,
  call,
  createKey,
  type EngineProcess,
  engineServiceAccount,
  keyPath,
  operatorNamespace,
  saToken,
  spawnEngine,
} from './engine-helpers.ts';
import { createNamespace, kubectl, waitFor } from './harness.ts';

type Rec = Record<string, unknown> & { principal?: { name: string; uid?: string; groups?: string[] } };

let op: { namespace: string; master: KeyObject };
let ns: string;
let engine: EngineProcess;
let auditDir: string;
let stdout = '';
const tokens: Record<string, string> = {};
const uids: Record<string, string> = {};

beforeAll(async () => {
  await applyKeyCrd();
  op = await operatorNamespace();
  ns = await createNamespace('kw-audit');
  await createKey(op, ns, 'orders');
  const docs = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'app', namespace: ns } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'intruder', namespace: ns } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'orders-encrypter', namespace: ns },
      rules: [
        { apiGroups: ['keyward.io'], resources: ['keys'], resourceNames: ['orders'], verbs: ['encrypt'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'app-orders', namespace: ns },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'orders-encrypter' },
      subjects: [{ kind: 'ServiceAccount', name: 'app', namespace: ns }],
    },
  ];
  await kubectl(['apply', '-f', '-'], { input: docs.map((d) => stringify(d)).join('---\n') });
  for (const sa of ['app', 'intruder']) {
    tokens[sa] = await saToken(ns, sa, 'keyward');
    uids[sa] = (await kubectl(['get', 'sa', sa, '-n', ns, '-o', 'jsonpath={.metadata.uid}'])).stdout.trim();
  }
  tokens.wrongAudience = await saToken(ns, 'app', 'another-service');
  auditDir = mkdtempSync(join(tmpdir(), 'keyward-engine-audit-'));
  const kubeconfig = await engineServiceAccount(op.namespace);
  engine = await spawnEngine([
    '--kubeconfig',
    kubeconfig,
    '--namespace',
    op.namespace,
    '--identity',
    'engine-a',
    '--audit-dir',
    auditDir,
    '--audit-checkpoint-records',
    '3',
  ]);
  engine.child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
});

afterAll(async () => {
  await engine?.stop();
  if (auditDir) removeDir(auditDir);
});

const records = (): Rec[] =>
  segmentFiles(auditDir).flatMap((f) => readLines(f).map((l) => JSON.parse(l) as Rec));

describe('cluster engine audit records', () => {
  it('name the ServiceAccount of every call, refused ones included', async () => {
    const enc = await call(engine, 'POST', keyPath(ns, 'orders', '/encrypt'), {
      token: tokens.app,
      body: { plaintext: b64('cluster secret') },
    });
    expect(enc.status).toBe(200);
    const denied = await call(engine, 'POST', keyPath(ns, 'orders', '/decrypt'), {
      token: tokens.app,
      body: { ciphertext: enc.body.ciphertext },
    });
    expect(denied.status).toBe(403);
    const intruder = await call(engine, 'POST', keyPath(ns, 'orders', '/batch/encrypt'), {
      token: tokens.intruder,
      body: { requests: [{ plaintext: b64('x') }] },
    });
    expect(intruder.status).toBe(403);
    const anonymous = await call(engine, 'POST', keyPath(ns, 'orders', '/encrypt'), {
      token: tokens.wrongAudience,
      body: { plaintext: b64('x') },
    });
    expect(anonymous.status).toBe(401);
    await engine.stop(); // SIGTERM: the log is closed with its last checkpoint

    const requests = records().filter((r) => r.type === 'request');
    const sa = (name: string) => ({
      name: `system:serviceaccount:${ns}:${name}`,
      uid: uids[name],
      groups: expect.arrayContaining([
        'system:serviceaccounts',
        `system:serviceaccounts:${ns}`,
        'system:authenticated',
      ]),
    });
    expect(requests).toEqual([
      expect.objectContaining({
        operation: 'encrypt',
        namespace: ns,
        key: 'orders',
        version: 1,
        outcome: 'ok',
        status: 200,
        principal: sa('app'),
      }),
      expect.objectContaining({
        operation: 'decrypt',
        key: 'orders',
        outcome: 'PERMISSION_DENIED',
        status: 403,
        principal: sa('app'),
      }),
      expect.objectContaining({
        operation: 'encrypt',
        key: 'orders',
        outcome: 'PERMISSION_DENIED',
        status: 403,
        principal: sa('intruder'),
      }),
      expect.objectContaining({
        operation: 'encrypt',
        key: 'orders',
        outcome: 'UNAUTHENTICATED',
        status: 401,
      }),
    ]);
    expect(requests[3]!.principal).toBeUndefined();
    for (const r of requests) expect(r.source).toBe('127.0.0.1');
    // Neither the callers' tokens (nor their hashes) nor what they sent or got back.
    const text =
      segmentFiles(auditDir)
        .map((f) => readFileSync(f, 'utf8'))
        .join('') + stdout;
    const needles = [enc.body.ciphertext, enc.body.ciphertext.split(':')[2], b64('cluster secret')];
    for (const token of Object.values(tokens)) {
      needles.push(token, token.split('.')[2]!, createHash('sha256').update(token).digest('base64url'));
    }
    for (const needle of needles) expect(text.includes(needle)).toBe(false);
  });

  it('keep one chain named after the replica, on stdout and in the files alike, that verifies', async () => {
    const all = records();
    const chain = all[0]!.chain as string;
    expect(chain).toMatch(/^engine-a\/[0-9a-f]{8}$/);
    for (const r of all) expect(r.chain).toBe(chain);
    // Every record is on stdout too, byte for byte (the listening line shares stdout).
    const lines = await waitFor('the last records on stdout', async () => {
      const out = stdout.split('\n').filter((l) => l.startsWith('{"') && l.includes('"hash":'));
      return out.some((l) => l.includes('"reason":"close"')) ? out : undefined;
    });
    const fileLines = segmentFiles(auditDir).flatMap(readLines);
    expect(fileLines.slice(-lines.length)).toEqual(lines);
    const r = await verifyDir(auditDir, [op.master]);
    expect(r.finding).toBeUndefined();
    expect(r).toMatchObject({ valid: true, chains: [{ chain, closed: true }] });
    expect(r.macsChecked).toBeGreaterThanOrEqual(2);
  });
});
