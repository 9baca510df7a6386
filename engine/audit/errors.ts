/** The error requests get while `--audit-required` is on and the audit log cannot record them. */
import { KeywardError } from '../errors.ts';

/** 503 UNAVAILABLE, retryable: the request was not served (or its result was withheld). */
export function auditUnavailable(): KeywardError {
  return new KeywardError(
    'UNAVAILABLE',
    'the audit log cannot record requests, so none are served (--audit-required); try again later',
    { retryAfterSeconds: 5 },
  );
}
