/**
 * `--insecure-no-auth`: every caller is anonymous and may use every key. For development on one
 * machine only: the engine refuses to start with it on anything but a loopback address. The admin
 * verbs still answer 405, as they do with Kubernetes auth (keys are managed through Key resources).
 */
import { KeywardError } from '../errors.ts';
import type { Authenticator, AuthVerb, Principal } from '../http/auth.ts';

const ADMIN_VERBS: ReadonlySet<AuthVerb> = new Set<AuthVerb>([
  'create',
  'update',
  'enable',
  'disable',
  'rotate',
  'request-deletion',
  'cancel-deletion',
  'delete',
]);

/** See the module comment. */
export class InsecureNoAuth implements Authenticator {
  async authenticate(): Promise<Principal> {
    return { name: 'system:anonymous' };
  }

  async authorize(_principal: Principal, verb: AuthVerb): Promise<void> {
    if (ADMIN_VERBS.has(verb)) {
      throw new KeywardError(
        'METHOD_NOT_ALLOWED',
        'keys are managed through Key resources in this mode; this route is not available',
      );
    }
  }
}
