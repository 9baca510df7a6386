import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KMS_PROTO_PATH, KMS_PROTO_SHA256, kmsServiceDefinition } from './proto.ts';

const ROOT = join(import.meta.dirname, '../..');

describe('the KMS v2 .proto', () => {
  const text = readFileSync(KMS_PROTO_PATH, 'utf8');

  it('is the file Kubernetes publishes, unchanged (k8s.io/kms v0.35.4, apis/v2/api.proto)', () => {
    expect(createHash('sha256').update(text).digest('hex')).toBe(KMS_PROTO_SHA256);
    expect(text).toMatch(
      /^\/\*\nCopyright 2022 The Kubernetes Authors\.\n\nLicensed under the Apache License/,
    );
  });

  it('is the version the project kube-apiserver is built with', () => {
    const goMod = readFileSync(join(ROOT, 'test/controlplane/go.mod'), 'utf8');
    expect(goMod).toMatch(/^\s*k8s\.io\/kms => k8s\.io\/kms v0\.35\.4$/m);
  });

  it('defines KeyManagementService with Status, Encrypt and Decrypt', () => {
    const service = kmsServiceDefinition();
    expect(Object.keys(service).sort()).toEqual(['Decrypt', 'Encrypt', 'Status']);
    expect(service.Encrypt!.path).toBe('/v2.KeyManagementService/Encrypt');
    const encoded = service.Encrypt!.responseSerialize({
      ciphertext: Buffer.from('c'),
      key_id: 'k',
      annotations: {},
    });
    expect(service.Encrypt!.responseDeserialize(encoded)).toMatchObject({ key_id: 'k' });
  });
});
