/**
 * Progress on stderr for long work (RSA keygen, waiting for a server), only when stderr is a
 * TTY so scripts and pipes see nothing but results and errors.
 */
const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** Shows `label` with a spinner until the promise settles. */
export async function withProgress<T>(label: string, work: Promise<T> | (() => Promise<T>)): Promise<T> {
  const promise = typeof work === 'function' ? work() : work;
  if (!process.stderr.isTTY) return promise;
  let frame = 0;
  const started = Date.now();
  const draw = (): void => {
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`\r${FRAMES[frame++ % FRAMES.length]} ${label} ${seconds}s`);
  };
  const timer = setInterval(draw, 100);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
    process.stderr.write('\r\x1b[2K');
  }
}
