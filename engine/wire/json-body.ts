/**
 * The API's JSON body rule, in one place for the main thread's content-type parser (server.ts)
 * and the workers that parse whole batch requests (engine/pool/request-runner.ts): an empty or
 * all-whitespace body is `{}` (action routes accept it), bad JSON is a clear 400, a JSON `null`
 * is refused (every body is an object), and nothing else is done to the input. Pure.
 */
import { invalidArgument } from '../errors.ts';

/** Parses a request body; throws INVALID_ARGUMENT (field `body`) as the API words it. */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalidArgument('body', 'the body is not valid JSON');
  }
  if (value === null) throw invalidArgument('body', 'the body must be a JSON object, not null');
  return value;
}
