/**
 * The verifier of `keyward audit verify` (docs/audit.md "Verification"), free of I/O: it is fed
 * lines in log order and stops at the first bad one, naming its file and line.
 *
 * For each record it checks, in order: that the line is a record; that its `hash` is
 * BLAKE3(prev ‖ BLAKE3(canonical bytes)) (an edited line fails here, at that line); that it
 * follows the previous record of its chain (`prev` and `seq`: a deleted, inserted, swapped or
 * re-hashed line, or a removed segment file, fails here); and, for a checkpoint, its record count
 * and its keyed MAC (a chain rebuilt by someone without the master key fails here). At the end,
 * each chain must end with a closing checkpoint, unless `open` accepts a log whose writer is
 * running or crashed.
 */
import { canonicalJson, withoutChainFields } from './canonical.ts';
import { type ChainHasher, GENESIS_PREV, HASH_HEX } from './chain.ts';
import type { CheckpointKey } from './checkpoint-key.ts';

/** Options of {@link Verifier}. */
export interface VerifyOptions {
  /** Checkpoint keys to check MACs with; undefined checks the chain only. */
  keys: CheckpointKey[] | undefined;
  /** Accept a log that does not end with a closing checkpoint (a live or crashed writer). */
  open: boolean;
  /** Accept chains that begin after their first record (oldest segments removed on purpose). */
  allowPruned: boolean;
  /** Skip lines that are not audit records (a container log with other output). */
  skipForeignLines: boolean;
}

/** Where verification failed. */
export interface Finding {
  file: string;
  line: number;
  chain?: string;
  seq?: number;
  message: string;
  /**
   * `unclosed` when the only fault is the end: no closing checkpoint, or a cut last line. A cut
   * tail and a live or crashed writer look alike there, so it still fails (exit 1) without `open`.
   */
  kind: 'tampered' | 'unclosed';
}

/** The outcome of a verification. */
export interface VerifyReport {
  /** True when every record checked out (see `notes` for what was not checked). */
  valid: boolean;
  /** The first bad record (tampered, exit 1). */
  finding?: Finding;
  /** A reason verification could not decide (exit 2): the wrong master key, for instance. */
  error?: string;
  records: number;
  checkpoints: number;
  /** Checkpoints whose MAC was checked. */
  macsChecked: number;
  chains: Array<{ chain: string; records: number; firstSeq: number; lastSeq: number; closed: boolean }>;
  skippedLines: number;
  notes: string[];
}

const RECORD_TYPES = new Set(['segment', 'start', 'request', 'operator', 'checkpoint']);
/** A container runtime (CRI) log line: `<time> <stream> <P|F> <text>`. */
const CRI_LINE = /^\S+ (stdout|stderr) [FP] (.*)$/s;

interface Place {
  file: string;
  line: number;
}

interface ChainState {
  name: string;
  firstSeq: number;
  seq: number;
  head: string;
  at: Place;
  type: string;
  reason: unknown;
  /** The last record before the current segment record(s): how the previous run ended. */
  runEnd: { type: string; reason: unknown } | undefined;
  /** Records since the last checkpoint; undefined before the first one of a pruned chain. */
  since: number | undefined;
  lastCheckpoint: Place | undefined;
  records: number;
  torn: (Place & { bytes: number }) | undefined;
}

type Rec = Record<string, unknown>;

const where = (p: Place): string => `${p.file}:${p.line}`;

/** See the module comment. Feed it with {@link Verifier.line}, then call {@link Verifier.finish}. */
export class Verifier {
  readonly #o: VerifyOptions;
  readonly #hasher: ChainHasher;
  readonly #keys = new Map<string, CheckpointKey>();
  readonly #chains = new Map<string, ChainState>();
  #lastChain: ChainState | undefined;
  #finding: Finding | undefined;
  #error: string | undefined;
  #records = 0;
  #checkpoints = 0;
  #macs = 0;
  #skipped = 0;
  readonly #notes: string[] = [];

  constructor(options: VerifyOptions, hasher: ChainHasher) {
    this.#o = options;
    this.#hasher = hasher;
    for (const k of options.keys ?? []) this.#keys.set(k.id, k);
  }

  /** True once a finding or an error has stopped verification. */
  get stopped(): boolean {
    return this.#finding !== undefined || this.#error !== undefined;
  }

  /**
   * Checks one line (without its newline). `terminated` is false for the last line of a file
   * that does not end with a newline (a cut write), whose length in bytes is `bytes`. Returns
   * false once verification has stopped.
   */
  line(file: string, lineNo: number, raw: string, terminated: boolean, bytes?: number): boolean {
    if (this.stopped) return false;
    const at = { file, line: lineNo };
    let text = raw;
    const cri = CRI_LINE.exec(text);
    if (cri) {
      if (cri[1] === 'stderr') {
        this.#skipped++;
        return true;
      }
      text = cri[2]!;
    }
    let rec: Rec | undefined;
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) rec = parsed as Rec;
    } catch {
      // not JSON
    }
    const looksLikeRecord = rec !== undefined && 'hash' in rec && 'prev' in rec && 'chain' in rec;
    if (!terminated && !looksLikeRecord) return this.#torn(at, bytes ?? Buffer.byteLength(raw));
    if (!looksLikeRecord) {
      if (this.#o.skipForeignLines && !text.includes('"prev":')) {
        this.#skipped++;
        return true;
      }
      return this.#fail(at, undefined, text === '' ? 'an empty line inside the log' : 'not an audit record');
    }
    return this.#record(at, rec!);
  }

  #torn(at: Place, bytes: number): boolean {
    const chain = this.#lastChain;
    if (chain === undefined) return this.#fail(at, undefined, 'an incomplete line before any record');
    chain.torn = { ...at, bytes };
    return true;
  }

  #record(at: Place, rec: Rec): boolean {
    const { chain: name, seq, type, hash, prev } = rec;
    if (
      typeof name !== 'string' ||
      name === '' ||
      typeof seq !== 'number' ||
      !Number.isSafeInteger(seq) ||
      seq < 0 ||
      typeof type !== 'string' ||
      !RECORD_TYPES.has(type) ||
      typeof hash !== 'string' ||
      !HASH_HEX.test(hash) ||
      typeof prev !== 'string' ||
      !HASH_HEX.test(prev)
    ) {
      return this.#fail(at, undefined, 'a malformed audit record (chain, seq, type, hash or prev)');
    }
    let canonical: string;
    try {
      canonical = canonicalJson(withoutChainFields(rec));
    } catch {
      return this.#fail(at, undefined, 'a record with values no audit record holds (an edited line)');
    }
    const h = this.#hasher;
    if (h.hash(prev, canonical) !== hash) {
      return this.#fail(at, undefined, `the record's hash does not match its content: the line was edited`);
    }
    this.#records++;

    let st = this.#chains.get(name);
    if (st === undefined) {
      if (seq === 0 && prev !== GENESIS_PREV) return this.#fail(at, undefined, 'seq 0 with a non-zero prev');
      if (seq !== 0) {
        if (!this.#o.allowPruned) {
          return this.#fail(
            at,
            undefined,
            `chain ${name} begins at seq ${seq}, not at its start: earlier records or segment files are missing (--allow-pruned accepts a log whose oldest segments were removed on purpose)`,
          );
        }
        this.#notes.push(
          `chain ${name} begins at seq ${seq} (${where(at)}); earlier records were not checked`,
        );
      }
      st = {
        name,
        firstSeq: seq,
        seq,
        head: hash,
        at,
        type,
        reason: rec.reason,
        runEnd: undefined,
        since: seq === 0 ? 0 : undefined,
        lastCheckpoint: undefined,
        records: 0,
        torn: undefined,
      };
      this.#chains.set(name, st);
    } else {
      if (st.torn !== undefined) {
        if (type !== 'segment' || rec.tornBytes !== st.torn.bytes) {
          return this.#fail(
            st.torn,
            st,
            'an incomplete line inside the log (a cut record that no later run accounts for)',
          );
        }
        st.torn = undefined;
      } else if (rec.tornBytes !== undefined) {
        return this.#fail(
          at,
          st,
          `this segment says the one before ends with a cut line of ${String(rec.tornBytes)} bytes, which is not there`,
        );
      }
      if (prev !== st.head) {
        if (seq === st.seq + 1) {
          return this.#fail(
            at,
            st,
            `does not follow the record at ${where(st.at)}: that record or this one was altered and re-hashed`,
          );
        }
        if (seq > st.seq + 1) {
          const missing = seq - st.seq - 1;
          return this.#fail(
            at,
            st,
            `${missing} record${missing === 1 ? '' : 's'} (seq ${st.seq + 1}${missing > 1 ? `..${seq - 1}` : ''}) missing after ${where(st.at)}: deleted lines or a removed segment file`,
          );
        }
        return this.#fail(
          at,
          st,
          `seq ${seq} after seq ${st.seq} (${where(st.at)}): a line inserted, duplicated or moved here`,
        );
      }
      if (seq !== st.seq + 1) return this.#fail(at, st, `seq ${seq} does not follow seq ${st.seq}`);
      const end = st.type === 'segment' ? st.runEnd : { type: st.type, reason: st.reason };
      if (type === 'start' && end !== undefined && !(end.type === 'checkpoint' && end.reason === 'close')) {
        this.#notes.push(
          `chain ${name}: the run before seq ${seq} (${where(at)}) ended without closing the log (a crash or kill)`,
        );
      }
    }
    if (type === 'checkpoint' && !this.#checkpoint(at, st, rec, prev)) return false;
    // A segment record restarts the count of records since the last checkpoint (as the writer does).
    if (type === 'segment') st.since = 0;
    if (type !== 'checkpoint' && st.since !== undefined) st.since++;
    if (type === 'segment' && st.type !== 'segment') st.runEnd = { type: st.type, reason: st.reason };
    st.seq = seq;
    st.head = hash;
    st.at = at;
    st.type = type;
    st.reason = rec.reason;
    st.records++;
    this.#lastChain = st;
    return true;
  }

  #checkpoint(at: Place, st: ChainState, rec: Rec, prev: string): boolean {
    this.#checkpoints++;
    if (st.since !== undefined && rec.records !== st.since) {
      return this.#fail(
        at,
        st,
        `the checkpoint counts ${String(rec.records)} records since the previous one, the log holds ${st.since}: records were removed or added`,
      );
    }
    if (this.#o.keys !== undefined) {
      const key = typeof rec.keyId === 'string' ? this.#keys.get(rec.keyId) : undefined;
      if (key === undefined) {
        if (this.#macs === 0) {
          this.#error = `no master key given matches key id ${String(rec.keyId)} of the checkpoint at ${where(at)} (the wrong master key, or a forged checkpoint)`;
          return false;
        }
        return this.#fail(at, st, `a checkpoint under an unknown key id ${String(rec.keyId)}: forged`);
      }
      const { mac, ...unsigned } = withoutChainFields(rec);
      if (typeof mac !== 'string' || key.mac(prev, canonicalJson(unsigned)) !== mac) {
        const since = st.lastCheckpoint ? `since ${where(st.lastCheckpoint)}` : 'before it';
        return this.#fail(
          at,
          st,
          `the checkpoint's MAC does not match: the records ${since} were altered and re-chained, or the checkpoint was forged`,
        );
      }
      this.#macs++;
    }
    st.since = 0;
    st.lastCheckpoint = at;
    return true;
  }

  #fail(at: Place, st: ChainState | undefined, message: string, kind: Finding['kind'] = 'tampered'): false {
    this.#finding = { file: at.file, line: at.line, ...(st ? { chain: st.name } : {}), message, kind };
    return false;
  }

  /** The report, once every line is in. */
  finish(): VerifyReport {
    if (!this.stopped) {
      for (const st of this.#chains.values()) {
        if (st.torn !== undefined) {
          if (!this.#o.open) {
            this.#fail(
              st.torn,
              st,
              'the log ends with an incomplete line: a crash during a write, or a cut (--open accepts a crashed writer)',
              'unclosed',
            );
            break;
          }
          this.#notes.push(
            `chain ${st.name}: ${where(st.torn)} is an incomplete line (a crash during a write)`,
          );
        }
        const closed = st.type === 'checkpoint' && st.reason === 'close';
        if (!closed) {
          const sealed = st.lastCheckpoint
            ? `the last checkpoint at ${where(st.lastCheckpoint)}`
            : 'its start';
          if (!this.#o.open) {
            this.#fail(
              st.at,
              st,
              `chain ${st.name} ends here without a closing checkpoint: the tail was cut, or the writer is running or crashed (--open accepts a live log)`,
              'unclosed',
            );
            break;
          }
          this.#notes.push(
            `chain ${st.name}: ${st.since ?? '?'} record(s) after ${sealed} are chained but not yet sealed by a checkpoint`,
          );
        }
      }
    }
    if (this.#o.keys === undefined && this.#checkpoints > 0) {
      this.#notes.push(
        `checkpoint MACs not checked (--chain-only): whoever can write the log could have rebuilt the chain`,
      );
    }
    if (this.#chains.size === 0 && !this.stopped) this.#error = 'no audit records found';
    return {
      valid: !this.stopped,
      ...(this.#finding ? { finding: this.#finding } : {}),
      ...(this.#error ? { error: this.#error } : {}),
      records: this.#records,
      checkpoints: this.#checkpoints,
      macsChecked: this.#macs,
      chains: [...this.#chains.values()].map((st) => ({
        chain: st.name,
        records: st.records,
        firstSeq: st.firstSeq,
        lastSeq: st.seq,
        closed: st.type === 'checkpoint' && st.reason === 'close',
      })),
      skippedLines: this.#skipped,
      notes: this.#notes,
    };
  }
}
