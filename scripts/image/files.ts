/**
 * The one list of files that go into the Keyward image: `.dockerignore`. Docker applies it to
 * the build context that the Dockerfile copies whole (`COPY . ./`); `npm run image` applies it
 * here with Docker's rules, so both builds ship the same files. test/image/files.test.ts holds
 * the Dockerfile to that one `COPY` and checks the rules below against Docker's documented
 * behaviour.
 *
 * Docker's rules (moby/patternmatcher): lines are patterns, `#` starts a comment, a leading `!`
 * re-includes; the last pattern that matches a path decides; a pattern matches a path when it
 * matches the path itself or one of its parent directories; `*` and `?` never cross `/`, and
 * `**` matches any number of directories.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';

interface Rule {
  negate: boolean;
  /** The cleaned pattern, for pruning. */
  pattern: string;
  regex: RegExp;
}

/** Parses `.dockerignore` text into rules. */
export function parseDockerignore(text: string): Rule[] {
  const rules: Rule[] = [];
  for (const raw of text.split('\n')) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negate = line.startsWith('!');
    if (negate) line = line.slice(1).trim();
    let pattern = posix.normalize(line).replace(/^\/+/, '').replace(/\/+$/, '');
    if (pattern === '.' || pattern === '') pattern = '*';
    rules.push({ negate, pattern, regex: toRegex(pattern) });
  }
  return rules;
}

function toRegex(pattern: string): RegExp {
  let out = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*' && pattern[i + 1] === '*') {
      i++;
      if (pattern[i + 1] === '/') {
        i++;
        out += '(?:.*/)?'; // `**/` : zero or more directories
      } else {
        out += '.*';
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`${out}$`);
}

/** True when Docker would send `path` (relative, `/`-separated) in the build context. */
export function isIncluded(rules: readonly Rule[], path: string): boolean {
  const parts = path.split('/');
  let excluded = false;
  for (const rule of rules) {
    let matched = false;
    for (let i = parts.length; i >= 1 && !matched; i--)
      matched = rule.regex.test(parts.slice(0, i).join('/'));
    if (matched) excluded = !rule.negate;
  }
  return !excluded;
}

/** True when some `!` rule could re-include something under the excluded directory `dir`. */
function mayReinclude(rules: readonly Rule[], dir: string): boolean {
  return rules.some((r) => {
    if (!r.negate) return false;
    const literal = r.pattern.split(/[*?[]/)[0] ?? '';
    // A wildcard before the end of `dir`, or a pattern inside `dir`, may match below it.
    return literal.length <= dir.length ? dir.startsWith(literal) : literal.startsWith(`${dir}/`);
  });
}

/**
 * The files of the build context of `root` after `.dockerignore`, sorted, as relative paths.
 * Excluded directories are not walked unless a `!` rule may re-include something inside.
 */
export function contextFiles(
  root: string,
  ignoreText = readFileSync(join(root, '.dockerignore'), 'utf8'),
): string[] {
  const rules = parseDockerignore(ignoreText);
  const files: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(join(root, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (path === '.git') continue;
      if (entry.isDirectory()) {
        if (isIncluded(rules, path) || mayReinclude(rules, path)) walk(path);
      } else if ((entry.isFile() || entry.isSymbolicLink()) && isIncluded(rules, path)) {
        files.push(path);
      }
    }
  };
  walk('');
  return files.sort();
}
