/**
 * The Kubernetes KMS v2 gRPC API (`k8s.io/kms/apis/v2`, package `v2`, service
 * `KeyManagementService`), loaded at run time from the `.proto` file as Kubernetes publishes it.
 *
 * Source: `v2/api.proto` beside this file is a verbatim copy of `apis/v2/api.proto` from the Go
 * module k8s.io/kms v0.35.4, the version the project's kube-apiserver v1.35.4 uses
 * (test/controlplane/go.mod). SHA-256 707c98c686bfcfa9c068263bc40eb97b95a194fdf0aa2d8d7ddb60a147b8cd1c;
 * engine/kms/proto.test.ts holds it to that digest. Keep it as published (license header
 * included): to move to a newer API, copy the newer file and update both digests.
 */
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** Where the published `.proto` lives (inside engine/, so the image carries it). */
export const KMS_PROTO_PATH = fileURLToPath(new URL('./v2/api.proto', import.meta.url));

/** The digest of the published file, as copied from k8s.io/kms v0.35.4. */
export const KMS_PROTO_SHA256 = '707c98c686bfcfa9c068263bc40eb97b95a194fdf0aa2d8d7ddb60a147b8cd1c';

/** The API version string `Status` must answer (KEP-3299; `v2beta1` is its older alias). */
export const KMS_API_VERSION = 'v2';

/** `StatusResponse`. */
export interface StatusResponse {
  version: string;
  healthz: string;
  key_id: string;
}

/** `EncryptRequest`. */
export interface EncryptRequest {
  plaintext: Buffer;
  uid: string;
}

/** `EncryptResponse`. */
export interface EncryptResponse {
  ciphertext: Buffer;
  key_id: string;
  annotations: Record<string, Buffer>;
}

/** `DecryptRequest`. */
export interface DecryptRequest {
  ciphertext: Buffer;
  uid: string;
  key_id: string;
  annotations: Record<string, Buffer>;
}

/** `DecryptResponse`. */
export interface DecryptResponse {
  plaintext: Buffer;
}

interface KmsPackage {
  v2: { KeyManagementService: { service: ServiceDefinition } & (new (...args: never[]) => unknown) };
}

let loaded: KmsPackage | undefined;

function kmsPackage(): KmsPackage {
  // Field names as in the .proto (`key_id`), bytes as Buffers, absent fields as their defaults
  // (an empty string, an empty Buffer), so handlers never see undefined.
  loaded ??= loadPackageDefinition(
    loadSync(KMS_PROTO_PATH, { keepCase: true, defaults: true, longs: String, enums: String }),
  ) as unknown as KmsPackage;
  return loaded;
}

/** The `KeyManagementService` definition, for `Server.addService`. */
export function kmsServiceDefinition(): ServiceDefinition {
  return kmsPackage().v2.KeyManagementService.service;
}

/** The generated client constructor (tests and the bench call the plugin with it). */
export function kmsClientConstructor(): KmsPackage['v2']['KeyManagementService'] {
  return kmsPackage().v2.KeyManagementService;
}
