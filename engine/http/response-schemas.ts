/**
 * The response schemas of the API: `/openapi.json` documents them, and the hot crypto routes
 * serialize with them (fast-json-stringify). Request schemas are in `schemas.ts`.
 */
import { DATA_KEY_BITS, KEY_BOUNDARY_NAMES, KEY_USAGE_NAMES, MAX_AES_PLAINTEXT } from '../crypto/limits.ts';
import { HTTP_STATUS } from '../errors.ts';
import { KEY_OPERATIONS, KEY_STATES } from '../keys/model.ts';
import { base64, ciphertext } from '../wire/schema-fields.ts';
import type { Schema } from '../wire/validate.ts';

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
    usage: { type: 'string', enum: KEY_USAGE_NAMES },
    convergent: { type: 'boolean' },
    boundary: { type: 'string', enum: KEY_BOUNDARY_NAMES },
    region: { type: ['string', 'null'] },
    rotation: {
      type: 'object',
      required: ['enabled', 'periodDays'],
      properties: { enabled: { type: 'boolean' }, periodDays: { type: 'integer' } },
    },
    memo: { type: 'string' },
    state: { type: 'string', enum: KEY_STATES },
    currentVersion: { type: 'integer' },
    versions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['version', 'createdTime', 'masterKeyVersion'],
        properties: {
          version: { type: 'integer' },
          createdTime: isoTime,
          masterKeyVersion: { type: ['integer', 'null'] },
          nonceCount: { type: 'integer' },
        },
      },
    },
    createdTime: isoTime,
    nextRotationTime: nullableTime,
    deletionScheduledTime: nullableTime,
    fingerprint: { type: ['string', 'null'] },
    lastUsedTime: nullableTime,
    operationCounts: {
      type: 'object',
      additionalProperties: false,
      properties: Object.fromEntries(KEY_OPERATIONS.map((op) => [op, { type: 'integer' }])),
    },
    materialError: { type: 'string' },
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
  properties: { plaintext: base64('The plaintext.', MAX_AES_PLAINTEXT) },
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
    plaintext: base64('The data key; absent when includePlaintext is false.', Math.max(...DATA_KEY_BITS) / 8),
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
