/**
 * The JSON schemas of the API: the routes validate with them and `/openapi.json` is generated
 * from them, so the documentation cannot drift from what the server accepts.
 */
import { HTTP_STATUS } from '../errors.ts';
import type { Schema } from './validate.ts';

const base64 = (description: string): Schema => ({ type: 'string', contentEncoding: 'base64', description });

/** The key-name rule of PRODUCT.md §2 (uniqueness ignores case). */
export const KEY_NAME_PATTERN = '^[A-Za-z][A-Za-z0-9_-]{2,14}$';

const rotation: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean', description: 'Rotate automatically (default true).' },
    periodDays: {
      type: 'integer',
      minimum: 1,
      maximum: 730,
      description: 'Days between rotations (default 90).',
    },
  },
};

export const createKeyBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'usage'],
  properties: {
    name: {
      type: 'string',
      pattern: KEY_NAME_PATTERN,
      description: 'Unique in the namespace, ignoring case.',
    },
    usage: { type: 'string', enum: ['AES256', 'RSA2048', 'ECDSA'] },
    convergent: { type: 'boolean', description: 'AES256 only: deterministic encryption under a context.' },
    boundary: { type: 'string', enum: ['Global', 'Isolated'] },
    region: {
      type: 'string',
      minLength: 1,
      maxLength: 63,
      description: 'Required when boundary is Isolated.',
    },
    rotation,
    memo: { type: 'string', maxLength: 100 },
  },
};

export const patchKeyBody: Schema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: { memo: { type: 'string', maxLength: 100 }, rotation },
};

export const emptyBody: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {},
  description: 'Empty, or {}.',
};

const aad = base64('Additional authenticated data (AES256), up to 8 KiB.');
const context = base64('Context, 1 to 1024 bytes; required for convergent keys.');
const algorithm: Schema = {
  type: 'string',
  enum: ['RSASSA_PSS_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_256', 'ECDSA_SHA_256', 'ECDSA_SHA_256_RAW'],
  description: 'Default: RSASSA_PSS_SHA_256 for RSA2048, ECDSA_SHA_256 (DER) for ECDSA.',
};
const ciphertext: Schema = { type: 'string', description: 'keyward:v<N>:<base64>' };

export const encryptBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['plaintext'],
  properties: { plaintext: base64('Up to 32 KiB (AES256) or 190 bytes (RSA2048).'), aad, context },
};

export const decryptBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['ciphertext'],
  properties: { ciphertext, aad, context },
};

export const signBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['data'],
  properties: {
    data: base64('The message (up to 8 KiB), or a 32-byte SHA-256 digest when prehashed.'),
    prehashed: { type: 'boolean' },
    algorithm,
  },
};

export const verifyBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['data', 'signature'],
  properties: { ...signBody.properties, signature: { type: 'string', description: 'keyward:v<N>:<base64>' } },
};

export const dataKeyBody: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    bits: { type: 'integer', enum: [128, 256, 512], description: 'Default 256.' },
    context,
    aad,
    includePlaintext: { type: 'boolean', description: 'Default true; false for envelope-only use.' },
  },
};

/** Per-item schemas of the batch routes, checked item by item. */
export const batchItemSchemas = {
  encrypt: encryptBody,
  decrypt: decryptBody,
  're-encrypt': decryptBody,
  sign: signBody,
  verify: verifyBody,
} as const;

/** Most items a batch may hold. */
export const MAX_BATCH_ITEMS = 1000;

/**
 * A batch body. With `item` (for the OpenAPI document) it describes the items fully; without it
 * (for validation) the items are left unchecked here and checked one by one by the route, so one
 * bad item fails only itself.
 */
export function batchBody(item?: Schema): Schema {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['requests'],
    properties: {
      requests: { type: 'array', minItems: 1, maxItems: MAX_BATCH_ITEMS, ...(item ? { items: item } : {}) },
    },
  };
}

// ---- responses ----

export const errorResponse: Schema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: {
          type: 'string',
          // One list: the codes of engine/errors.ts.
          enum: Object.keys(HTTP_STATUS),
        },
        message: { type: 'string' },
        field: { type: 'string' },
      },
    },
  },
};

const isoTime: Schema = { type: 'string', format: 'date-time' };
const nullableTime: Schema = { type: ['string', 'null'], format: 'date-time' };

export const keyView: Schema = {
  type: 'object',
  required: [
    'name',
    'namespace',
    'usage',
    'convergent',
    'boundary',
    'region',
    'rotation',
    'memo',
    'state',
    'currentVersion',
    'versions',
    'createdTime',
    'nextRotationTime',
    'deletionScheduledTime',
    'fingerprint',
    'lastUsedTime',
    'operationCounts',
  ],
  properties: {
    name: { type: 'string' },
    namespace: { type: 'string' },
    usage: { type: 'string', enum: ['AES256', 'RSA2048', 'ECDSA'] },
    convergent: { type: 'boolean' },
    boundary: { type: 'string', enum: ['Global', 'Isolated'] },
    region: { type: ['string', 'null'] },
    rotation: {
      type: 'object',
      required: ['enabled', 'periodDays'],
      properties: { enabled: { type: 'boolean' }, periodDays: { type: 'integer' } },
    },
    memo: { type: 'string' },
    state: { type: 'string', enum: ['Enabled', 'Disabled', 'PendingDeletion'] },
    currentVersion: { type: 'integer' },
    versions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['version', 'createdTime'],
        properties: { version: { type: 'integer' }, createdTime: isoTime },
      },
    },
    createdTime: isoTime,
    nextRotationTime: nullableTime,
    deletionScheduledTime: nullableTime,
    fingerprint: { type: 'string' },
    lastUsedTime: nullableTime,
    operationCounts: {
      type: 'object',
      properties: Object.fromEntries(
        ['encrypt', 'decrypt', 're-encrypt', 'sign', 'verify', 'generate-data-key', 'get-public-key'].map(
          (op) => [op, { type: 'integer' }],
        ),
      ),
    },
  },
};

export const keyList: Schema = {
  type: 'object',
  required: ['keys'],
  properties: { keys: { type: 'array', items: keyView } },
};

/** An action's answer: the key after it, plus `warnings` when there are any. */
export const actionResponse: Schema = {
  ...keyView,
  properties: {
    ...keyView.properties,
    warnings: {
      type: 'array',
      items: { type: 'string' },
      description: 'e.g. a deletion requested for a key used in the last 7 days',
    },
  },
};

/** The answer of delete-now. */
export const destroyedResponse: Schema = {
  type: 'object',
  required: ['name', 'namespace', 'state'],
  properties: {
    name: { type: 'string' },
    namespace: { type: 'string' },
    state: { type: 'string', enum: ['Destroyed'] },
  },
};

const ciphertextOut: Schema = {
  type: 'object',
  required: ['ciphertext', 'keyVersion'],
  properties: { ciphertext, keyVersion: { type: 'integer' } },
};
const plaintextOut: Schema = {
  type: 'object',
  required: ['plaintext'],
  properties: { plaintext: base64('The plaintext.') },
};
const signatureOut: Schema = {
  type: 'object',
  required: ['signature', 'keyVersion'],
  properties: { signature: { type: 'string' }, keyVersion: { type: 'integer' } },
};
const verifyOut: Schema = { type: 'object', required: ['valid'], properties: { valid: { type: 'boolean' } } };

/** Output schema per operation. */
export const operationOutputs = {
  encrypt: ciphertextOut,
  decrypt: plaintextOut,
  're-encrypt': ciphertextOut,
  sign: signatureOut,
  verify: verifyOut,
} as const;

export const dataKeyOut: Schema = {
  type: 'object',
  required: ['ciphertext', 'keyVersion'],
  properties: {
    ciphertext,
    plaintext: base64('The data key; absent when includePlaintext is false.'),
    keyVersion: { type: 'integer' },
  },
};

export const publicKeyOut: Schema = {
  type: 'object',
  required: ['keyVersion', 'pem', 'jwk'],
  properties: {
    keyVersion: { type: 'integer' },
    pem: { type: 'string', description: 'SPKI PEM' },
    jwk: { type: 'object', additionalProperties: true },
  },
};

/** A batch result: the operation's output, or its own error. */
export function batchOut(output: Schema): Schema {
  return {
    type: 'object',
    required: ['results'],
    properties: {
      results: { type: 'array', items: { oneOf: [output, errorResponse] } },
    },
  };
}
