/**
 * The Key CRD repeats, in its OpenAPI schema and CEL rules, limits whose one source is
 * engine/crypto/limits.ts (the apiserver cannot import TypeScript). This test keeps the copy
 * honest: change a limit and this fails until the CRD says the same.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  DEFAULT_ROTATION_PERIOD_DAYS,
  KEY_BOUNDARY_NAMES,
  KEY_USAGE_NAMES,
  MAX_KEY_NAME,
  MAX_MEMO_CHARS,
  MAX_ROTATION_PERIOD_DAYS,
  MIN_KEY_NAME,
  MIN_ROTATION_PERIOD_DAYS,
  REGION_PATTERN,
} from '../engine/crypto/limits.ts';

const crd = parse(readFileSync(join(import.meta.dirname, '..', 'crds', 'keys.keyward.io.yaml'), 'utf8'));
const schema = crd.spec.versions[0].schema.openAPIV3Schema;
const spec = schema.properties.spec.properties;

describe('the Key CRD and engine/crypto/limits.ts', () => {
  it('agree on usages, boundaries, region, rotation and memo', () => {
    expect(spec.usage.enum).toEqual([...KEY_USAGE_NAMES]);
    expect(spec.boundary.enum).toEqual([...KEY_BOUNDARY_NAMES]);
    expect(spec.region.pattern).toBe(REGION_PATTERN);
    expect(spec.region.maxLength).toBe(63);
    const period = spec.rotation.properties.periodDays;
    expect([period.minimum, period.maximum, period.default]).toEqual([
      MIN_ROTATION_PERIOD_DAYS,
      MAX_ROTATION_PERIOD_DAYS,
      DEFAULT_ROTATION_PERIOD_DAYS,
    ]);
    expect(spec.memo.maxLength).toBe(MAX_MEMO_CHARS);
  });

  it('agrees on the key name length', () => {
    const rules = (schema['x-kubernetes-validations'] as Array<{ rule: string }>).map((r) => r.rule);
    expect(rules).toContain(
      `size(self.metadata.name) >= ${MIN_KEY_NAME} && size(self.metadata.name) <= ${MAX_KEY_NAME}`,
    );
  });

  it('refuses a region that starts or ends with "-" (the engine does too)', () => {
    const re = new RegExp(REGION_PATTERN);
    expect(['eu-west-1', 'a', 'x'.repeat(63)].every((r) => re.test(r))).toBe(true);
    expect(['-eu', 'eu-', 'EU', '', 'x'.repeat(64), 'eu_west'].some((r) => re.test(r))).toBe(false);
  });
});
