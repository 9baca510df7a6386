/**
 * `keyward encrypt|decrypt|re-encrypt|sign|verify|data-key|public-key`: data comes from stdin or
 * `--in FILE`, results go to stdout. Text output is the bare result (a ciphertext or signature
 * line, raw plaintext bytes for decrypt, PEM for public-key) so commands compose in pipes.
 */
import { createReadStream } from 'node:fs';
import { type Command, Option } from 'commander';
import {
  BODY_LIMITS,
  DATA_KEY_BITS,
  DEFAULT_DATA_KEY_BITS,
  MAX_AES_PLAINTEXT,
  MAX_SIGN_MESSAGE,
  MAX_VERSION_NUMBER,
  SHA256_DIGEST_LENGTH,
  SIGNATURE_ALGORITHM_NAMES,
} from '../crypto/limits.ts';
import { versionParam } from '../wire/schemas.ts';
import { CliError, callApi } from './client.ts';
import { type ClientContext, clientContext, clientOptions, keyName, keyPath } from './options.ts';
import { printJson } from './output.ts';

/**
 * Reads stdin or `--in FILE`, at most `limit` bytes: reading stops at the first byte over it with a
 * clear error, so a huge input never sits in memory (`what` says what the limit is for).
 */
async function readInput(file: string | undefined, limit: number, what: string): Promise<Buffer> {
  const fromFile = file !== undefined && file !== '-';
  if (!fromFile && process.stdin.isTTY) throw new CliError('no input: pipe data on stdin or give --in FILE');
  const stream = fromFile ? createReadStream(file, { highWaterMark: 64 * 1024 }) : process.stdin;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        throw new CliError(`the input is over ${limit} bytes, the most ${what}`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(
      `cannot read ${fromFile ? file : 'stdin'}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  } finally {
    if (fromFile) (stream as ReturnType<typeof createReadStream>).destroy();
  }
  return Buffer.concat(chunks);
}

/** A ciphertext or signature read from input: surrounding whitespace and newlines are dropped. */
async function readToken(file: string | undefined): Promise<string> {
  return (await readInput(file, BODY_LIMITS.single, 'a ciphertext can be')).toString('utf8').trim();
}

function withKey(cmd: Command): Command {
  return clientOptions(cmd.requiredOption('-k, --key <name>', 'key name', keyName));
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
  if (opts.context !== undefined && opts.contextBase64 !== undefined) {
    throw new CliError('give --context or --context-base64, not both');
  }
  if (opts.aad !== undefined && opts.aadBase64 !== undefined) {
    throw new CliError('give --aad or --aad-base64, not both');
  }
  if (opts.context !== undefined) out.context = Buffer.from(opts.context, 'utf8').toString('base64');
  if (opts.contextBase64 !== undefined) out.context = opts.contextBase64;
  if (opts.aad !== undefined) out.aad = Buffer.from(opts.aad, 'utf8').toString('base64');
  if (opts.aadBase64 !== undefined) out.aad = opts.aadBase64;
  return out;
}

const algorithmOption = () =>
  new Option('--algorithm <alg>', 'signature algorithm').choices(SIGNATURE_ALGORITHM_NAMES);

/** Parses `--key-version` by the API's own pattern. */
function keyVersion(value: string): string {
  if (!new RegExp(versionParam.pattern!).test(value)) {
    throw new Error(
      `--key-version must be a version number from 1 to ${MAX_VERSION_NUMBER}, not ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** The sign/verify input limit: a message, or a digest when prehashed. */
function signInput(opts: { in?: string; prehashed?: boolean }): Promise<Buffer> {
  return opts.prehashed
    ? readInput(opts.in, SHA256_DIGEST_LENGTH, 'a prehashed digest has')
    : readInput(opts.in, MAX_SIGN_MESSAGE, 'sign and verify take (use --prehashed with a SHA-256 digest)');
}

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
    const fields = contextFields(opts);
    const ctx = await clientContext(opts);
    const plaintext = await readInput(
      opts.in,
      MAX_AES_PLAINTEXT,
      'encrypt takes (use data-key for envelope encryption of larger data)',
    );
    const out = await post<{ ciphertext: string; keyVersion: number }>(ctx, opts.key, 'encrypt', {
      plaintext: plaintext.toString('base64'),
      ...fields,
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
    const fields = contextFields(opts);
    const ctx = await clientContext(opts);
    const out = await post<{ plaintext: string }>(ctx, opts.key, 'decrypt', {
      ciphertext: await readToken(opts.in),
      ...fields,
    });
    if (ctx.output === 'json') printJson(out);
    else process.stdout.write(Buffer.from(out.plaintext, 'base64'));
  });

  withKey(
    withContext(
      withData(program.command('re-encrypt').description('move a ciphertext to the current key version')),
    ),
  ).action(async (opts) => {
    const fields = contextFields(opts);
    const ctx = await clientContext(opts);
    const out = await post<{ ciphertext: string; keyVersion: number }>(ctx, opts.key, 're-encrypt', {
      ciphertext: await readToken(opts.in),
      ...fields,
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
      data: (await signInput(opts)).toString('base64'),
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
      data: (await signInput(opts)).toString('base64'),
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
      .addOption(
        new Option('--bits <n>', 'key size')
          .choices(DATA_KEY_BITS.map(String))
          .default(String(DEFAULT_DATA_KEY_BITS)),
      )
      .option('--no-plaintext', 'return only the encrypted data key')
      .option('--context <text>', 'context (UTF-8 text); required by convergent keys')
      .option('--context-base64 <b64>', 'context as base64')
      .option('--aad <text>', 'additional authenticated data (UTF-8 text)')
      .option('--aad-base64 <b64>', 'additional authenticated data as base64'),
  ).action(async (opts) => {
    const fields = contextFields(opts);
    const ctx = await clientContext(opts);
    const out = await post<{ ciphertext: string; plaintext?: string; keyVersion: number }>(
      ctx,
      opts.key,
      'data-key',
      {
        bits: Number(opts.bits),
        includePlaintext: opts.plaintext !== false,
        ...fields,
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
      .option('--key-version <n>', 'a version other than the current one', keyVersion),
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
