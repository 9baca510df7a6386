/**
 * Small process and network helpers for the test control plane (Linux: they read /proc).
 */
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/**
 * Returns `count` distinct loopback ports that were free a moment ago. They are held open
 * together so that no two are the same; another process may still take one before we bind it.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((ok, fail) => {
        server.once('error', fail);
        server.listen(0, '127.0.0.1', ok);
      });
    }
    return servers.map((s) => {
      const address = s.address();
      if (address === null || typeof address === 'string') throw new Error('no TCP address');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
  }
}

/** A GET with an optional bearer token and CA; resolves with the status and body text. */
export function httpGet(
  url: string,
  options: { token?: string; ca?: string; timeoutMs?: number } = {},
): Promise<{ status: number; body: string }> {
  const target = new URL(url);
  const lib = target.protocol === 'https:' ? https : http;
  return new Promise((ok, fail) => {
    const req = lib.request(
      target,
      {
        method: 'GET',
        headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
        ...(options.ca ? { ca: options.ca } : {}),
        timeout: options.timeoutMs ?? 5000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          ok({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', fail);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', fail);
    req.end();
  });
}

/**
 * Live members of process group `pgid` whose command line mentions `marker`. The marker check
 * keeps a recycled pid from ever being mistaken for ours.
 */
export function groupMembers(pgid: number, marker: string): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the parenthesised command name: state ppid pgrp ...
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) !== pgid || fields[0] === 'Z') continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(marker)) members.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return members;
}

/** True when process group `pgid` still has a member of ours (see {@link groupMembers}). */
export function isGroupAlive(pgid: number, marker: string): boolean {
  return groupMembers(pgid, marker).length > 0;
}

/** SIGTERM to the whole group, then SIGKILL after `graceMs`; resolves when it is gone. */
export async function killGroup(pgid: number, marker: string, graceMs = 15_000): Promise<void> {
  if (!isGroupAlive(pgid, marker)) return;
  signalGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isGroupAlive(pgid, marker)) return;
    await sleep(100);
  }
  signalGroup(pgid, 'SIGKILL');
  for (let i = 0; i < 50 && isGroupAlive(pgid, marker); i++) await sleep(100);
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // Already gone.
  }
}
