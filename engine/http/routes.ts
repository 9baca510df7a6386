/**
 * The route table of the API (PRODUCT.md §6). `server.ts` registers these with fastify and
 * `openapi.ts` documents them, from the same definitions and schemas.
 */
import { BODY_LIMITS, MAX_VERSION_NUMBER } from '../crypto/limits.ts';
import type { SignatureAlgorithm } from '../crypto/signing.ts';
import { KeywardError } from '../errors.ts';
import type { KeyOperation } from '../keys/model.ts';
import type {
  BatchOperation,
  CreateKeyInput,
  KeyAction,
  KeyAdmin,
  KeyBackend,
  KeyPatch,
} from '../service/backend.ts';
import { BATCH_OPERATIONS } from '../service/backend.ts';
import { decodeBase64, decodeOptional } from '../wire/base64.ts';
import {
  BATCH_ITEM_COMPONENTS,
  batchBody,
  batchItemDoc,
  createKeyBody,
  dataKeyBody,
  decryptBody,
  emptyBody,
  encryptBody,
  patchKeyBody,
  signBody,
  verifyBody,
  versionParam,
} from '../wire/schemas.ts';
import type { Schema } from '../wire/validate.ts';
import type { AuthVerb } from './auth.ts';
import { runBatch } from './batch.ts';
import {
  actionResponse,
  batchOut,
  dataKeyOut,
  destroyedResponse,
  keyList,
  keyView,
  operationOutputs,
  publicKeyOut,
} from './response-schemas.ts';

export { BODY_LIMITS };

/** What a handler gets. */
export interface RouteContext {
  backend: KeyBackend;
  namespace: string;
  name: string;
  body: Record<string, unknown>;
  query: Record<string, unknown>;
  /** Counts operations for /metrics: `(operation, result, count)`. */
  count(operation: string, result: string, n?: number): void;
  /** Records a batch's size for /metrics. */
  observeBatch(operation: string, size: number): void;
  /**
   * Batch routes whose whole request runs in a worker (the server's `batchParsing: 'worker'`):
   * the raw body, unparsed (`body` is then empty).
   */
  raw?: Buffer;
  /** Tells the audit log a batch's item counts (its record's `batch`). */
  noteBatch(ok: number, failed: number): void;
  /**
   * Once the response that carries `bytes` has been handed to the socket: zeroes them if `wipe`,
   * and frees their memory (release-buffer.ts).
   */
  releaseAfterSend(bytes: Buffer, o: { wipe: boolean }): void;
}

/** One API route. */
export interface RouteDef {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** OpenAPI-style path: `/v1/namespaces/{namespace}/keys/{name}`. */
  path: string;
  operationId: string;
  summary: string;
  tag: 'keys' | 'crypto' | 'batch';
  /** Authorization verb (PRODUCT.md §6 SubjectAccessReview verbs for crypto). */
  verb: AuthVerb;
  /** True for the key-management routes that answer 405 when the backend has no admin part. */
  admin: boolean;
  /** Validation schema of the body. */
  body?: Schema;
  /** Schema documented for the body, when it differs from the validation one (batch). */
  docBody?: Schema;
  query?: Record<string, Schema>;
  /** Success status and schema. */
  status: number;
  response: Schema;
  bodyLimit: number;
  /** Returns the response object, or a Buffer holding the serialized JSON response. */
  handler(ctx: RouteContext): Promise<unknown>;
}

const KEYS = '/v1/namespaces/{namespace}/keys';
const KEY = `${KEYS}/{name}`;

function adminOf(backend: KeyBackend): KeyAdmin {
  if (backend.admin === undefined) {
    throw new KeywardError(
      'METHOD_NOT_ALLOWED',
      'keys are managed through Key resources in this mode; this route is not available',
    );
  }
  return backend.admin;
}

/** Encodes a plaintext for the response, then zeroes the buffer (the string cannot be wiped). */
const b64Wiped = (buf: Buffer): string => {
  const text = buf.toString('base64');
  buf.fill(0);
  return text;
};
const str = (v: unknown): string | undefined => v as string | undefined;
const bool = (v: unknown): boolean | undefined => v as boolean | undefined;
// The body schema allows only the known algorithm names; the engine checks them against the usage.
const algorithmOf = (v: unknown): SignatureAlgorithm | undefined => v as SignatureAlgorithm | undefined;

/** Wraps a crypto call so every outcome is counted per key, operation and result. */
async function counted<T>(ctx: RouteContext, op: KeyOperation, run: () => Promise<T>): Promise<T> {
  try {
    const value = await run();
    ctx.count(op, 'ok');
    return value;
  } catch (err) {
    ctx.count(op, err instanceof KeywardError ? err.code : 'INTERNAL');
    throw err;
  }
}

function actionRoute(action: Exclude<KeyAction, 'delete-now'>): RouteDef {
  return {
    method: 'POST',
    path: `${KEY}/${action}`,
    operationId: `${action.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())}Key`,
    summary: `${action.replace('-', ' ')} a key`,
    tag: 'keys',
    verb: action,
    admin: true,
    body: emptyBody,
    status: 200,
    response: actionResponse,
    bodyLimit: BODY_LIMITS.admin,
    handler: async (ctx) => actionView(await adminOf(ctx.backend).action(ctx.namespace, ctx.name, action)),
  };
}

function actionView(result: { key?: object; warnings?: string[] }): object {
  return { ...(result.key ?? {}), ...(result.warnings?.length ? { warnings: result.warnings } : {}) };
}

const OPERATION_VERB: Record<BatchOperation, AuthVerb & KeyOperation> = {
  encrypt: 'encrypt',
  decrypt: 'decrypt',
  're-encrypt': 're-encrypt',
  sign: 'sign',
  verify: 'verify',
};

/** All routes of the API under /v1. */
export const ROUTES: readonly RouteDef[] = [
  {
    method: 'GET',
    path: KEYS,
    operationId: 'listKeys',
    summary: 'List the keys of a namespace',
    tag: 'keys',
    verb: 'list',
    admin: false,
    status: 200,
    response: keyList,
    bodyLimit: BODY_LIMITS.admin,
    handler: async (ctx) => ({ keys: await ctx.backend.list(ctx.namespace) }),
  },
  {
    method: 'POST',
    path: KEYS,
    operationId: 'createKey',
    summary: 'Create a key',
    tag: 'keys',
    verb: 'create',
    admin: true,
    body: createKeyBody,
    status: 201,
    response: keyView,
    bodyLimit: BODY_LIMITS.admin,
    handler: async (ctx) => adminOf(ctx.backend).create(ctx.namespace, ctx.body as unknown as CreateKeyInput),
  },
  {
    method: 'GET',
    path: KEY,
    operationId: 'getKey',
    summary: 'Get a key',
    tag: 'keys',
    verb: 'get',
    admin: false,
    status: 200,
    response: keyView,
    bodyLimit: BODY_LIMITS.admin,
    handler: async (ctx) => ctx.backend.get(ctx.namespace, ctx.name),
  },
  {
    method: 'PATCH',
    path: KEY,
    operationId: 'updateKey',
    summary: 'Change the memo or the rotation policy of a key',
    tag: 'keys',
    verb: 'update',
    admin: true,
    body: patchKeyBody,
    status: 200,
    response: keyView,
    bodyLimit: BODY_LIMITS.admin,
    handler: async (ctx) =>
      adminOf(ctx.backend).update(ctx.namespace, ctx.name, ctx.body as unknown as KeyPatch),
  },
  {
    method: 'DELETE',
    path: KEY,
    operationId: 'deleteKeyNow',
    summary: 'Destroy a key pending deletion now (delete-now)',
    tag: 'keys',
    verb: 'delete',
    admin: true,
    status: 200,
    response: destroyedResponse,
    bodyLimit: BODY_LIMITS.admin,
    handler: async (ctx) => {
      await adminOf(ctx.backend).action(ctx.namespace, ctx.name, 'delete-now');
      return { name: ctx.name, namespace: ctx.namespace, state: 'Destroyed' };
    },
  },
  ...(['enable', 'disable', 'rotate', 'request-deletion', 'cancel-deletion'] as const).map(actionRoute),
  {
    method: 'POST',
    path: `${KEY}/encrypt`,
    operationId: 'encrypt',
    summary: 'Encrypt up to 32 KiB (AES256) or 190 bytes (RSA2048)',
    tag: 'crypto',
    verb: 'encrypt',
    admin: false,
    body: encryptBody,
    status: 200,
    response: operationOutputs.encrypt,
    bodyLimit: BODY_LIMITS.single,
    handler: (ctx) =>
      counted(ctx, 'encrypt', () =>
        ctx.backend.encrypt(ctx.namespace, ctx.name, {
          plaintext: decodeBase64(str(ctx.body.plaintext) ?? '', 'plaintext'),
          aad: decodeOptional(str(ctx.body.aad), 'aad'),
          context: decodeOptional(str(ctx.body.context), 'context'),
        }),
      ),
  },
  ...(['decrypt', 're-encrypt'] as const).map(
    (op): RouteDef => ({
      method: 'POST',
      path: `${KEY}/${op}`,
      operationId: op === 'decrypt' ? 'decrypt' : 'reEncrypt',
      summary:
        op === 'decrypt'
          ? 'Decrypt a ciphertext'
          : 'Move a ciphertext to the current version without revealing it',
      tag: 'crypto',
      verb: op,
      admin: false,
      body: decryptBody,
      status: 200,
      response: operationOutputs[op],
      bodyLimit: BODY_LIMITS.single,
      handler: (ctx) =>
        counted(ctx, op, async () => {
          const input = {
            ciphertext: str(ctx.body.ciphertext) ?? '',
            aad: decodeOptional(str(ctx.body.aad), 'aad'),
            context: decodeOptional(str(ctx.body.context), 'context'),
          };
          if (op === 're-encrypt') return ctx.backend.reEncrypt(ctx.namespace, ctx.name, input);
          const { plaintext } = await ctx.backend.decrypt(ctx.namespace, ctx.name, input);
          return { plaintext: b64Wiped(plaintext) };
        }),
    }),
  ),
  {
    method: 'POST',
    path: `${KEY}/sign`,
    operationId: 'sign',
    summary: 'Sign a message (up to 8 KiB) or a SHA-256 digest',
    tag: 'crypto',
    verb: 'sign',
    admin: false,
    body: signBody,
    status: 200,
    response: operationOutputs.sign,
    bodyLimit: BODY_LIMITS.single,
    handler: (ctx) =>
      counted(ctx, 'sign', () =>
        ctx.backend.sign(ctx.namespace, ctx.name, {
          data: decodeBase64(str(ctx.body.data) ?? '', 'data'),
          prehashed: bool(ctx.body.prehashed),
          algorithm: algorithmOf(ctx.body.algorithm),
        }),
      ),
  },
  {
    method: 'POST',
    path: `${KEY}/verify`,
    operationId: 'verify',
    summary: 'Verify a signature: {valid: true|false}',
    tag: 'crypto',
    verb: 'verify',
    admin: false,
    body: verifyBody,
    status: 200,
    response: operationOutputs.verify,
    bodyLimit: BODY_LIMITS.single,
    handler: (ctx) =>
      counted(ctx, 'verify', () =>
        ctx.backend.verify(ctx.namespace, ctx.name, {
          data: decodeBase64(str(ctx.body.data) ?? '', 'data'),
          signature: str(ctx.body.signature) ?? '',
          prehashed: bool(ctx.body.prehashed),
          algorithm: algorithmOf(ctx.body.algorithm),
        }),
      ),
  },
  {
    method: 'POST',
    path: `${KEY}/data-key`,
    operationId: 'generateDataKey',
    summary: 'Generate a data key for envelope encryption',
    tag: 'crypto',
    verb: 'generate-data-key',
    admin: false,
    body: dataKeyBody,
    status: 200,
    response: dataKeyOut,
    bodyLimit: BODY_LIMITS.single,
    handler: (ctx) =>
      counted(ctx, 'generate-data-key', async () => {
        const out = await ctx.backend.dataKey(ctx.namespace, ctx.name, {
          bits: ctx.body.bits as number | undefined,
          context: decodeOptional(str(ctx.body.context), 'context'),
          aad: decodeOptional(str(ctx.body.aad), 'aad'),
          includePlaintext: bool(ctx.body.includePlaintext),
        });
        return out.plaintext === undefined
          ? { ciphertext: out.ciphertext, keyVersion: out.keyVersion }
          : { ciphertext: out.ciphertext, plaintext: b64Wiped(out.plaintext), keyVersion: out.keyVersion };
      }),
  },
  {
    method: 'GET',
    path: `${KEY}/public-key`,
    operationId: 'getPublicKey',
    summary: 'The public key (PEM SPKI and JWK) of an RSA2048 or ECDSA key',
    tag: 'crypto',
    verb: 'get-public-key',
    admin: false,
    query: { version: versionParam },
    status: 200,
    response: publicKeyOut,
    bodyLimit: BODY_LIMITS.admin,
    handler: (ctx) =>
      counted(ctx, 'get-public-key', () =>
        ctx.backend.publicKey(ctx.namespace, ctx.name, parseVersion(ctx.query.version)),
      ),
  },
  ...BATCH_OPERATIONS.map(
    (op): RouteDef => ({
      method: 'POST',
      path: `${KEY}/batch/${op}`,
      operationId: `batch${op === 're-encrypt' ? 'ReEncrypt' : op[0]!.toUpperCase() + op.slice(1)}`,
      summary: `${op} 1 to 1000 items; each result is its output or {error}`,
      tag: 'batch',
      verb: OPERATION_VERB[op],
      admin: false,
      body: batchBody(),
      docBody: batchBody(batchItemDoc(op, BATCH_ITEM_COMPONENTS[op])),
      status: 200,
      response: batchOut(operationOutputs[op]),
      bodyLimit: BODY_LIMITS.batch,
      handler: (ctx) => runBatch(ctx, op),
    }),
  ),
];

const VERSION = new RegExp(versionParam.pattern!);

function parseVersion(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !VERSION.test(value)) {
    throw new KeywardError('INVALID_ARGUMENT', `version must be an integer from 1 to ${MAX_VERSION_NUMBER}`, {
      field: 'version',
    });
  }
  return Number(value);
}
