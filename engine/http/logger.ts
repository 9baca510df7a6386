/**
 * The server's pino logger. Request bodies are never logged (request logging is off and handlers
 * log only names and codes); redaction is the second line of defence for anything that slips
 * into a log object: headers with tokens, and any field that could carry material or plaintext.
 */
import pino, { type Logger } from 'pino';

const REDACT = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'token',
  '*.token',
  'plaintext',
  '*.plaintext',
  'material',
  '*.material',
  'wrapped',
  '*.wrapped',
  'body',
  '*.body',
];

/** A JSON logger to stderr (stdout stays free for command output). */
export function createLogger(level = process.env.KEYWARD_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' } }, pino.destination(2));
}
