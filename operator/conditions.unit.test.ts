import { describe, expect, it } from 'vitest';
import { setCondition, setConditions } from './conditions.ts';

const T0 = Date.parse('2026-11-29T10:00:00Z');
const T1 = T0 + 60_000;

describe('setCondition', () => {
  it('adds a new condition stamped with now', () => {
    const list = setCondition(
      undefined,
      { type: 'Ready', status: 'True', reason: 'Reconciled', message: 'ok', observedGeneration: 1 },
      T0,
    );
    expect(list).toEqual([
      {
        type: 'Ready',
        status: 'True',
        reason: 'Reconciled',
        message: 'ok',
        lastTransitionTime: '2026-11-29T10:00:00Z',
        observedGeneration: 1,
      },
    ]);
  });

  it('keeps lastTransitionTime when only reason, message or generation change', () => {
    const a = setCondition(
      undefined,
      { type: 'Enabled', status: 'False', reason: 'Disabled', message: 'x' },
      T0,
    );
    const b = setCondition(
      a,
      { type: 'Enabled', status: 'False', reason: 'PendingDeletion', message: 'y', observedGeneration: 3 },
      T1,
    );
    expect(b[0]).toEqual({
      type: 'Enabled',
      status: 'False',
      reason: 'PendingDeletion',
      message: 'y',
      lastTransitionTime: '2026-11-29T10:00:00Z',
      observedGeneration: 3,
    });
    expect(a[0]?.reason).toBe('Disabled'); // input untouched
  });

  it('moves lastTransitionTime when the status changes, keeping order', () => {
    const a = setConditions(
      undefined,
      [
        { type: 'Ready', status: 'True', reason: 'R', message: '' },
        { type: 'Enabled', status: 'True', reason: 'Enabled', message: '' },
      ],
      T0,
    );
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'Broken', message: '' }, T1 + 999);
    expect(b.map((c) => c.type)).toEqual(['Ready', 'Enabled']);
    expect(b.find((c) => c.type === 'Ready')?.lastTransitionTime).toBe('2026-11-29T10:01:00Z');
    expect(b.find((c) => c.type === 'Enabled')?.lastTransitionTime).toBe('2026-11-29T10:00:00Z');
  });
});
