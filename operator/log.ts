/**
 * The operator's logger: pino, JSON lines on stderr. Log calls pass key references, reasons and
 * short error descriptions only, never objects that could hold material.
 */
import { pino } from 'pino';

/** The logger type used across the operator. */
export type Logger = pino.Logger;

/** A logger named `keyward-operator` at `level`. */
export function createLogger(level = process.env.KEYWARD_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: 'keyward-operator', level }, pino.destination(2));
}
