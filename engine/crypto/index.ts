/** The crypto primitives of Keyward in one import; see docs/crypto.md and docs/architecture.md. */
export * from './aes-gcm.ts';
export * from './assert.ts';
export * from './convergent.ts';
export * from './fingerprint.ts';
export * from './format.ts';
export * from './hkdf.ts';
export * from './limits.ts';
export * from './material.ts';
export * from './prepared-key.ts';
export * from './public-key.ts';
export * from './rsa-oaep.ts';
export * from './signing.ts';
export * from './wrap.ts';
