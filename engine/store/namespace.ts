/** Validation of key-store namespaces, which are Kubernetes namespace names (DNS-1123 labels). */
import { NAMESPACE_PATTERN as NAMESPACE_SOURCE } from '../crypto/limits.ts';
import { invalidArgument } from '../errors.ts';

/** A DNS-1123 label: lowercase letters, digits and `-`, starting and ending alphanumeric, ≤ 63. */
const NAMESPACE_PATTERN = new RegExp(NAMESPACE_SOURCE);

/**
 * Checks a namespace name and returns it. Besides the API contract, this keeps path traversal
 * (`..`, `/`) out of the store's file paths.
 */
export function validateNamespace(namespace: unknown): string {
  if (typeof namespace !== 'string' || !NAMESPACE_PATTERN.test(namespace)) {
    throw invalidArgument(
      'namespace',
      'namespace must be 1 to 63 lowercase letters, digits or "-", starting and ending with a letter or digit',
    );
  }
  return namespace;
}
