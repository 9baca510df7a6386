/** `keyward key ...`: key management through the API. */
import { Command, Option } from 'commander';
import {
  DEFAULT_ROTATION_PERIOD_DAYS,
  KEY_BOUNDARY_NAMES,
  KEY_USAGE_NAMES,
  MAX_MEMO_CHARS,
  MAX_ROTATION_PERIOD_DAYS,
  MIN_ROTATION_PERIOD_DAYS,
} from '../crypto/limits.ts';
import { validateRegion } from '../keys/spec.ts';
import type { KeyView } from '../service/backend.ts';
import { callApi } from './client.ts';
import { type ClientContext, clientContext, clientOptions, keyName, keyPath } from './options.ts';
import { formatKey, formatKeyTable, printable, printJson } from './output.ts';
import { withProgress } from './progress.ts';

type KeyResult = KeyView & { warnings?: string[] };

function printKey(ctx: ClientContext, key: KeyResult, note?: string): void {
  if (ctx.output === 'json') {
    printJson(key);
    return;
  }
  if (note) process.stdout.write(`${note}\n`);
  process.stdout.write(formatKey(key));
  for (const w of key.warnings ?? []) process.stderr.write(`warning: ${printable(w)}\n`);
}

const ROTATION_RANGE = `${MIN_ROTATION_PERIOD_DAYS}..${MAX_ROTATION_PERIOD_DAYS}`;

/** `--rotation-days`: whole days within the key spec's bounds. */
function rotationDays(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < MIN_ROTATION_PERIOD_DAYS || n > MAX_ROTATION_PERIOD_DAYS) {
    throw new Error(
      `--rotation-days must be a whole number of days from ${ROTATION_RANGE}, not ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/** `--memo`: at most MAX_MEMO_CHARS characters (code points, as the API counts). */
function memo(value: string): string {
  if ([...value].length > MAX_MEMO_CHARS)
    throw new Error(`--memo must be at most ${MAX_MEMO_CHARS} characters`);
  return value;
}

/** `--region`: the key spec's region rule. */
function region(value: string): string {
  try {
    return validateRegion(value, '--region');
  } catch (err) {
    throw new Error((err as Error).message);
  }
}

/** Checks a `<name>` argument before anything is sent. */
function checkedName(name: string): string {
  return keyName(name);
}

/** Builds `keyward key`. */
export function keyCommand(): Command {
  const key = new Command('key').description(
    'manage keys (create, list, get, enable, disable, rotate, delete, ...)',
  );

  clientOptions(
    key
      .command('create <name>')
      .description('create a key')
      .addOption(new Option('--usage <usage>', 'key type').choices(KEY_USAGE_NAMES).makeOptionMandatory())
      .option('--convergent', 'AES256 only: deterministic encryption under a context')
      .addOption(new Option('--boundary <boundary>', 'where the key may be used').choices(KEY_BOUNDARY_NAMES))
      .option('--region <region>', 'the region of an Isolated key', region)
      .option(
        '--rotation-days <days>',
        `rotate automatically every N days (${ROTATION_RANGE}, default ${DEFAULT_ROTATION_PERIOD_DAYS})`,
        rotationDays,
      )
      .option('--no-rotation', 'no automatic rotation')
      .option('--memo <text>', `a note, up to ${MAX_MEMO_CHARS} characters`, memo),
  ).action(async (name: string, opts) => {
    checkedName(name);
    const ctx = await clientContext(opts);
    const body: Record<string, unknown> = { name, usage: opts.usage };
    if (opts.convergent) body.convergent = true;
    if (opts.boundary) body.boundary = opts.boundary;
    if (opts.region !== undefined) body.region = opts.region;
    if (opts.rotation === false) body.rotation = { enabled: false };
    else if (opts.rotationDays !== undefined)
      body.rotation = { enabled: true, periodDays: opts.rotationDays };
    if (opts.memo !== undefined) body.memo = opts.memo;
    const created = await withProgress(
      `creating ${opts.usage} key ${name}`,
      callApi<KeyResult>(ctx.config, 'POST', ctx.keysPath, body, { waitSeconds: ctx.waitSeconds }),
    );
    printKey(ctx, created, `Created key ${created.name}.`);
  });

  clientOptions(key.command('list').description('list the keys of a namespace')).action(async (opts) => {
    const ctx = await clientContext(opts);
    const { keys } = await callApi<{ keys: KeyView[] }>(ctx.config, 'GET', ctx.keysPath, undefined, {
      waitSeconds: ctx.waitSeconds,
    });
    if (ctx.output === 'json') printJson({ keys });
    else process.stdout.write(formatKeyTable(keys));
  });

  clientOptions(key.command('get <name>').description('show a key')).action(async (name: string, opts) => {
    checkedName(name);
    const ctx = await clientContext(opts);
    printKey(
      ctx,
      await callApi<KeyResult>(ctx.config, 'GET', keyPath(ctx, name), undefined, {
        waitSeconds: ctx.waitSeconds,
      }),
    );
  });

  clientOptions(
    key
      .command('update <name>')
      .description('change the memo or the rotation policy of a key')
      .option('--memo <text>', `a note, up to ${MAX_MEMO_CHARS} characters`, memo)
      .option('--rotation-days <days>', `rotation period in days (${ROTATION_RANGE})`, rotationDays)
      .option('--rotation', 'turn automatic rotation on')
      .option('--no-rotation', 'turn automatic rotation off'),
  ).action(async (name: string, opts, cmd: Command) => {
    checkedName(name);
    const ctx = await clientContext(opts);
    const body: Record<string, unknown> = {};
    if (opts.memo !== undefined) body.memo = opts.memo;
    const rotation: Record<string, unknown> = {};
    // Commander sets `rotation` to true by default because of --no-rotation; only an explicit flag counts.
    if (cmd.getOptionValueSource('rotation') === 'cli') rotation.enabled = opts.rotation;
    if (opts.rotationDays !== undefined) rotation.periodDays = opts.rotationDays;
    if (Object.keys(rotation).length > 0) body.rotation = rotation;
    if (Object.keys(body).length === 0)
      throw new Error('nothing to update: give --memo, --rotation-days or --[no-]rotation');
    printKey(
      ctx,
      await callApi<KeyResult>(ctx.config, 'PATCH', keyPath(ctx, name), body, {
        waitSeconds: ctx.waitSeconds,
      }),
      'Updated.',
    );
  });

  const actions: Array<[string, string, string]> = [
    ['enable', 'enable', 'enable a disabled key'],
    ['disable', 'disable', 'disable a key (it refuses every operation until enabled)'],
    ['rotate', 'rotate', 'add a new version and make it current'],
    ['delete', 'request-deletion', 'request deletion: the key is destroyed after the deletion delay (72 h)'],
    ['cancel-deletion', 'cancel-deletion', 'cancel a requested deletion (the key becomes Disabled)'],
  ];
  for (const [command, action, description] of actions) {
    clientOptions(key.command(`${command} <name>`).description(description)).action(
      async (name: string, opts) => {
        checkedName(name);
        const ctx = await clientContext(opts);
        const result = await withProgress(
          `${command} ${name}`,
          callApi<KeyResult>(
            ctx.config,
            'POST',
            `${keyPath(ctx, name)}/${action}`,
            {},
            { waitSeconds: ctx.waitSeconds },
          ),
        );
        printKey(ctx, result, `${command}: done.`);
      },
    );
  }

  clientOptions(
    key.command('delete-now <name>').description('destroy a key pending deletion now; cannot be undone'),
  ).action(async (name: string, opts) => {
    checkedName(name);
    const ctx = await clientContext(opts);
    const result = await callApi<{ name: string; state: string }>(
      ctx.config,
      'DELETE',
      keyPath(ctx, name),
      undefined,
      {
        waitSeconds: ctx.waitSeconds,
      },
    );
    if (ctx.output === 'json') printJson(result);
    else process.stdout.write(`Key ${result.name} destroyed.\n`);
  });
  return key;
}
