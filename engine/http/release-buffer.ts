/**
 * Frees a large buffer's memory at once, instead of at the garbage collection that finds it dead.
 *
 * Why: V8 counts the bytes of every live ArrayBuffer as external memory, and once enough more of
 * it is held than after the last full collection, it starts another full (mark-compact)
 * collection of the whole heap. A batch request of 100 items makes the serving thread hold about
 * 310 KB in large buffers (the body, and the response the worker serialized) while it allocates
 * little else, so before this the serving thread ran a full collection every 60 or so batch
 * requests, and V8's helper threads spent a tenth of the machine marking
 * (docs/performance.md, "Large buffers freed at once").
 *
 * Only a buffer that is the one view of a whole ArrayBuffer of its own is freed: small Buffers
 * share Node's allocation pool (`Buffer.poolSize`), which other Buffers still use.
 */

/**
 * Detaches `bytes`'s ArrayBuffer (its memory is freed now; every view of it reads as empty) when
 * `bytes` spans all of one larger than Node's Buffer pool. Returns whether it did. The caller must
 * be done with every view of it, and anything that could still read it (a socket write) finished.
 */
export function releaseBuffer(bytes: Uint8Array): boolean {
  const buffer = bytes.buffer;
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength <= Buffer.poolSize) return false;
  if (bytes.byteOffset !== 0 || bytes.byteLength !== buffer.byteLength) return false;
  try {
    buffer.transfer(0);
    return true;
  } catch {
    // A buffer its owner made non-detachable is left to the garbage collector.
    return false;
  }
}
