/**
 * The JSON schemas of the API: the routes validate with them and `/openapi.json` is generated
 * from them, so the documentation cannot drift from what the server accepts.
 */
import {
  BODY_LIMITS,
  DATA_KEY_BITS,
  DEFAULT_DATA_KEY_BITS,
  DEFAULT_ROTATION_PERIOD_DAYS,
  KEY_BOUNDARY_NAMES,
  KEY_NAME_PATTERN,
  KEY_USAGE_NAMES,
  MAX_AAD,
  MAX_AES_PLAINTEXT,
  MAX_BATCH_ITEMS,
  MAX_CONTEXT,
  MAX_MEMO_CHARS,
  MAX_ROTATION_PERIOD_DAYS,
  MAX_RSA_OAEP_PLAINTEXT,
  MAX_SIGN_MESSAGE,
  MAX_VERSION_NUMBER,
  MIN_CONTEXT,
  MIN_ROTATION_PERIOD_DAYS,
  REGION_PATTERN,
  SHA256_DIGEST_LENGTH,
  SIGNATURE_ALGORITHM_NAMES,
} from '../crypto/limits.ts';
import { base64, ciphertext } from './schema-fields.ts';
import type { Schema } from './validate.ts';

export { KEY_NAME_PATTERN, MAX_BATCH_ITEMS };

/** A `{name}` path parameter: a key name (400 before any lookup when it is not one). */
export const keyNameParam: Schema = {
  type: 'string',
  pattern: KEY_NAME_PATTERN,
  description: 'The key name; any ASCII case finds the key.',
};

/** The `?version=` query parameter of public-key. */
export const versionParam: Schema = {
  type: 'string',
  pattern: `^[1-9][0-9]{0,${String(MAX_VERSION_NUMBER).length - 1}}$`,
  description: 'A key version (1 to 999999999). Default: the current version.',
};

const memo: Schema = {
  type: 'string',
  maxLength: MAX_MEMO_CHARS,
  description: `Up to ${MAX_MEMO_CHARS} characters.`,
};

const rotation: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean', description: 'Rotate automatically (default true).' },
    periodDays: {
      type: 'integer',
      minimum: MIN_ROTATION_PERIOD_DAYS,
      maximum: MAX_ROTATION_PERIOD_DAYS,
      description: `Days between rotations (default ${DEFAULT_ROTATION_PERIOD_DAYS}).`,
    },
  },
};

/** Cross-field rules of a key spec (§2), as `keys/spec.ts` applies them. */
const specRules: Schema[] = [
  {
    if: { required: ['convergent'], properties: { convergent: { const: true } } },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword; never awaited
    then: {
      required: ['usage'],
      properties: { usage: { const: 'AES256' } },
      'x-error': { field: 'convergent', message: 'convergent is only allowed for AES256 keys' },
    },
  },
  {
    if: { required: ['boundary'], properties: { boundary: { const: 'Isolated' } } },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword; never awaited
    then: {
      required: ['region'],
      'x-error': { field: 'region', message: 'region is required when boundary is Isolated' },
    },
    else: {
      not: { required: ['region'] },
      'x-error': { field: 'region', message: 'region is only allowed when boundary is Isolated' },
    },
  },
];

export const createKeyBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'usage'],
  allOf: specRules,
  properties: {
    name: {
      type: 'string',
      pattern: KEY_NAME_PATTERN,
      description: 'Unique in the namespace, ignoring case.',
    },
    usage: { type: 'string', enum: KEY_USAGE_NAMES },
    convergent: { type: 'boolean', description: 'AES256 only: deterministic encryption under a context.' },
    boundary: { type: 'string', enum: KEY_BOUNDARY_NAMES },
    region: {
      type: 'string',
      pattern: REGION_PATTERN,
      description: 'Required when boundary is Isolated (and then the region this engine serves).',
    },
    rotation,
    memo,
  },
};

/**
 * The create body as `/openapi.json` documents it for an engine serving `region`: an Isolated key
 * must name that region, and an engine serving none creates Global keys only (the service refuses
 * the rest, since it could never use them).
 */
export function createKeyDocBody(region: string | undefined): Schema {
  const props = createKeyBody.properties!;
  return {
    ...createKeyBody,
    properties: {
      ...props,
      boundary:
        region === undefined
          ? { ...props.boundary, enum: ['Global'], description: 'This engine serves no region: Global only.' }
          : props.boundary!,
      region:
        region === undefined
          ? props.region!
          : { ...props.region, enum: [region], description: 'The region this engine serves.' },
    },
  };
}

export const patchKeyBody: Schema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: { memo, rotation },
  description: 'At least one of memo and rotation.',
};

export const emptyBody: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {},
  description: 'Empty, or {}.',
};

const aad = base64(`Additional authenticated data (AES256), up to ${MAX_AAD} bytes.`, MAX_AAD);
const context = base64(
  `Context, ${MIN_CONTEXT} to ${MAX_CONTEXT} bytes; required by convergent keys, refused by others.`,
  MAX_CONTEXT,
  MIN_CONTEXT,
);
const algorithm: Schema = {
  type: 'string',
  enum: SIGNATURE_ALGORITHM_NAMES,
  description: 'Default: RSASSA_PSS_SHA_256 for RSA2048, ECDSA_SHA_256 (DER) for ECDSA.',
};

export const encryptBody: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['plaintext'],
  properties: {
    plaintext: base64(
      `Up to ${MAX_AES_PLAINTEXT} bytes (AES256) or ${MAX_RSA_OAEP_PLAINTEXT} bytes (RSA2048).`,
      MAX_AES_PLAINTEXT,
    ),
    aad,
    context,
  },
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
    data: base64(
      `The message (up to ${MAX_SIGN_MESSAGE} bytes), or a ${SHA256_DIGEST_LENGTH}-byte SHA-256 digest when prehashed.`,
      MAX_SIGN_MESSAGE,
    ),
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
    bits: { type: 'integer', enum: DATA_KEY_BITS, description: `Default ${DEFAULT_DATA_KEY_BITS}.` },
    context,
    aad,
    includePlaintext: { type: 'boolean', description: 'Default true; false for envelope-only use.' },
  },
};

/** The `components.schemas` names of the batch item schemas in `/openapi.json`. */
export const BATCH_ITEM_COMPONENTS = {
  encrypt: 'EncryptRequest',
  decrypt: 'DecryptRequest',
  're-encrypt': 'DecryptRequest',
  sign: 'SignRequest',
  verify: 'VerifyRequest',
} as const;

/** Per-item schemas of the batch routes, checked item by item. */
export const batchItemSchemas = {
  encrypt: encryptBody,
  decrypt: decryptBody,
  're-encrypt': decryptBody,
  sign: signBody,
  verify: verifyBody,
} as const;

/**
 * How the OpenAPI document describes a batch item: any value is accepted into the batch, and one
 * that does not match the operation's body (`components.schemas`) gets its own error in `results`
 * while the others are done. (Describing the item schema as the items' type would promise a 400
 * for a bad item, which the API never gives.)
 */
export function batchItemDoc(op: keyof typeof batchItemSchemas, component: string): Schema {
  return {
    description: `One ${op} request, as the body of the single ${op} route (#/components/schemas/${component}). An item that does not match it gets its own error in results; the others are still done.`,
  };
}

/**
 * A batch body. The items are left unchecked here and checked one by one by the route (so one bad
 * item fails only itself); `item` is what the OpenAPI document says of them.
 */
export function batchBody(item?: Schema): Schema {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['requests'],
    properties: {
      requests: {
        type: 'array',
        minItems: 1,
        maxItems: MAX_BATCH_ITEMS,
        ...(item ? { items: item } : {}),
      },
    },
    description: `At most ${BODY_LIMITS.batch} bytes.`,
  };
}
