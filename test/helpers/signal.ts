/**
 * A one-shot signal for tests: `fire()` from a callback, `await done` in the test body.
 *
 * @example
 * const arrived = signal();
 * backend.route = (req, res) => arrived.fire();
 * await arrived.done;
 */
export function signal(): { done: Promise<void>; fire: () => void } {
  let fire: () => void = () => {};
  const done = new Promise<void>((r) => {
    fire = r;
  });
  return { done, fire };
}
