/**
 * `keyward encrypt|decrypt|re-encrypt|sign|verify|data-key|public-key`: data comes from stdin or
 * `--in FILE`, results go to stdout. Text output is the bare result (a ciphertext or signature
 * line, raw plaintext bytes for decrypt, PEM for public-key) so commands compose in pipes.
 */
import { readFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import { CliError, callApi } from './client.ts';
import { type ClientContext, clientContext, clientOptions, keyPath } from './options.ts';
import { printJson } from './output.ts';

async function readInput(file: string | undefined): Promise<Buffer> {
  if (file !== undefined && file !== '-') {
    try {
      return await readFile(file);
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  if (process.stdin.isTTY) throw new CliError('no input: pipe data on stdin or give --in FILE');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A ciphertext or signature read from input: surrounding whitespace and newlines are dropped. */
async function readToken(file: string | undefined): Promise<string> {
  return (await readInput(file)).toString('utf8').trim();
}

function withKey(cmd: Command): Command {
  return clientOptions(cmd.requiredOption('-k, --key <name>', 'key name'));
}

function withData(cmd: Command): Command {
  return cmd.option('--in <file>', 'read input from FILE instead of stdin');
}

function withContext(cmd: Command): Command {
  return cmd
    .option('--context <text>', 'context (UTF-8 text); required by convergent keys')
    .option('--context-base64 <b64>', 'context as base64 (binary contexts)')
    .option('--aad <text>', 'additional authenticated data (UTF-8 text), AES256 only')
    .option('--aad-base64 <b64>', 'additional authenticated data as base64');
}

function contextFields(opts: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  if (opts.context !== undefined) out.context = Buffer.from(opts.context, 'utf8').toString('base64');
  if (opts.contextBase64 !== undefined) out.context = opts.contextBase64;
  if (opts.aad !== undefined) out.aad = Buffer.from(opts.aad, 'utf8').toString('base64');
  if (opts.aadBase64 !== undefined) out.aad = opts.aadBase64;
  return out;
}

const algorithmOption = () =>
  new Option('--algorithm <alg>', 'signature algorithm').choices([
    'RSASSA_PSS_SHA_256',
    'RSASSA_PKCS1_V1_5_SHA_256',
    'ECDSA_SHA_256',
    'ECDSA_SHA_256_RAW',
  ]);

function post<T>(ctx: ClientContext, name: string, op: string, body: unknown): Promise<T> {
  return callApi<T>(ctx.config, 'POST', `${keyPath(ctx, name)}/${op}`, body, {
    waitSeconds: ctx.waitSeconds,
  });
}

/** Registers the crypto commands on `program`. */
export function registerCryptoCommands(program: Command): void {
  withKey(
    withContext(
      withData(program.command('encrypt').description('encrypt stdin (or --in FILE); prints the ciphertext')),
    ),
  ).action(async (opts) => {
    const ctx = await clientContext(opts);
    const plaintext = await readInput(opts.in);
    const out = await post<{ ciphertext: string; keyVersion: number }>(ctx, opts.key, 'encrypt', {
      plaintext: plaintext.toString('base64'),
      ...contextFields(opts),
    });
    if (ctx.output === 'json') printJson(out);
    else process.stdout.write(`${out.ciphertext}\n`);
  });

  withKey(
    withContext(
      withData(
        program.command('decrypt').description('decrypt a ciphertext from stdin; writes the raw plaintext'),
      ),
    ),
  ).action(async (opts) => {
    const ctx = await clientContext(opts);
    const out = await post<{ plaintext: string }>(ctx, opts.key, 'decrypt', {
      ciphertext: await readToken(opts.in),
      ...contextFields(opts),
    });
    if (ctx.output === 'json') printJson(out);
    else process.stdout.write(Buffer.from(out.plaintext, 'base64'));
  });

  withKey(
    withContext(
      withData(program.command('re-encrypt').description('move a ciphertext to the current key version')),
    ),
  ).action(async (opts) => {
    const ctx = await clientContext(opts);
    const out = await post<{ ciphertext: string; keyVersion: number }>(ctx, opts.key, 're-encrypt', {
      ciphertext: await readToken(opts.in),
      ...contextFields(opts),
    });
    if (ctx.output === 'json') printJson(out);
    else process.stdout.write(`${out.ciphertext}\n`);
  });

  withKey(
    withData(
      program
        .command('sign')
        .description('sign stdin (or --in FILE); prints the signature')
        .option('--prehashed', 'the input is a 32-byte SHA-256 digest')
        .addOption(algorithmOption()),
    ),
  ).action(async (opts) => {
    const ctx = await clientContext(opts);
    const out = await post<{ signature: string; keyVersion: number }>(ctx, opts.key, 'sign', {
      data: (await readInput(opts.in)).toString('base64'),
      ...(opts.prehashed ? { prehashed: true } : {}),
      ...(opts.algorithm ? { algorithm: opts.algorithm } : {}),
    });
    if (ctx.output === 'json') printJson(out);
    else process.stdout.write(`${out.signature}\n`);
  });

  withKey(
    withData(
      program
        .command('verify')
        .description('verify a signature over stdin (or --in FILE); exit 0 valid, 1 invalid, 2 error')
        .requiredOption('--signature <sig>', 'the signature (keyward:v<N>:...)')
        .option('--prehashed', 'the input is a 32-byte SHA-256 digest')
        .addOption(algorithmOption()),
    ),
  ).action(async (opts) => {
    const ctx = await clientContext(opts);
    const out = await post<{ valid: boolean }>(ctx, opts.key, 'verify', {
      data: (await readInput(opts.in)).toString('base64'),
      signature: opts.signature,
      ...(opts.prehashed ? { prehashed: true } : {}),
      ...(opts.algorithm ? { algorithm: opts.algorithm } : {}),
    });
    if (ctx.output === 'json') printJson(out);
    else process.stdout.write(out.valid ? 'valid\n' : 'invalid\n');
    if (!out.valid) process.exitCode = 1;
  });

  withKey(
    program
      .command('data-key')
      .description('generate a data key for envelope encryption')
      .addOption(new Option('--bits <n>', 'key size').choices(['128', '256', '512']).default('256'))
      .option('--no-plaintext', 'return only the encrypted data key')
      .option('--context <text>', 'context (UTF-8 text); required by convergent keys')
      .option('--context-base64 <b64>', 'context as base64')
      .option('--aad <text>', 'additional authenticated data (UTF-8 text)')
      .option('--aad-base64 <b64>', 'additional authenticated data as base64'),
  ).action(async (opts) => {
    const ctx = await clientContext(opts);
    const out = await post<{ ciphertext: string; plaintext?: string; keyVersion: number }>(
      ctx,
      opts.key,
      'data-key',
      {
        bits: Number(opts.bits),
        includePlaintext: opts.plaintext !== false,
        ...contextFields(opts),
      },
    );
    if (ctx.output === 'json') return printJson(out);
    process.stdout.write(`ciphertext: ${out.ciphertext}\n`);
    if (out.plaintext !== undefined) process.stdout.write(`plaintext:  ${out.plaintext}\n`);
  });

  withKey(
    program
      .command('public-key')
      .description('print the public key of an RSA2048 or ECDSA key (PEM; -o json for PEM and JWK)')
      .option('--key-version <n>', 'a version other than the current one'),
  ).action(async (opts) => {
    const ctx = await clientContext(opts);
    const query = opts.keyVersion === undefined ? '' : `?version=${encodeURIComponent(opts.keyVersion)}`;
    const out = await callApi<{ keyVersion: number; pem: string; jwk: unknown }>(
      ctx.config,
      'GET',
      `${keyPath(ctx, opts.key)}/public-key${query}`,
      undefined,
      { waitSeconds: ctx.waitSeconds },
    );
    if (ctx.output === 'json') printJson(out);
    else process.stdout.write(out.pem.endsWith('\n') ? out.pem : `${out.pem}\n`);
  });
}
