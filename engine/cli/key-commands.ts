/** `keyward key ...`: key management through the API. */
import { Command, Option } from 'commander';
import type { KeyView } from '../service/backend.ts';
import { callApi } from './client.ts';
import { type ClientContext, clientContext, clientOptions, keyPath } from './options.ts';
import { formatKey, formatKeyTable, printJson } from './output.ts';
import { withProgress } from './progress.ts';

type KeyResult = KeyView & { warnings?: string[] };

function printKey(ctx: ClientContext, key: KeyResult, note?: string): void {
  if (ctx.output === 'json') {
    printJson(key);
    return;
  }
  if (note) process.stdout.write(`${note}\n`);
  process.stdout.write(formatKey(key));
  for (const w of key.warnings ?? []) process.stderr.write(`warning: ${w}\n`);
}

function integer(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new Error(`${name} must be a whole number`);
    return Number(value);
  };
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
      .addOption(
        new Option('--usage <usage>', 'key type')
          .choices(['AES256', 'RSA2048', 'ECDSA'])
          .makeOptionMandatory(),
      )
      .option('--convergent', 'AES256 only: deterministic encryption under a context')
      .addOption(
        new Option('--boundary <boundary>', 'where the key may be used').choices(['Global', 'Isolated']),
      )
      .option('--region <region>', 'the region of an Isolated key')
      .option(
        '--rotation-days <days>',
        'rotate automatically every N days (1..730, default 90)',
        integer('--rotation-days'),
      )
      .option('--no-rotation', 'no automatic rotation')
      .option('--memo <text>', 'a note, up to 100 characters'),
  ).action(async (name: string, opts) => {
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
      .option('--memo <text>', 'a note, up to 100 characters')
      .option('--rotation-days <days>', 'rotation period in days (1..730)', integer('--rotation-days'))
      .option('--rotation', 'turn automatic rotation on')
      .option('--no-rotation', 'turn automatic rotation off'),
  ).action(async (name: string, opts, cmd: Command) => {
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
