import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DueQueue } from '../../src/util/due-queue.js';

test('DueQueue: items fire once when due, in order; deleted items never fire; onDue may re-add', async () => {
  const fired: string[] = [];
  let renewals = 0;
  type Item = { due: number; name: string };
  const q = new DueQueue<Item>((item, now) => {
    fired.push(item.name);
    assert.ok(now >= item.due, 'never fires early');
    if (item.name === 'renew' && ++renewals < 3) {
      item.due = now + 20;
      q.add(item);
    }
  });
  const t = performance.now();
  const a = { due: t + 20, name: 'a' };
  const gone = { due: t + 25, name: 'gone' };
  const renew = { due: t + 30, name: 'renew' };
  const b = { due: t + 40, name: 'b' };
  for (const item of [a, gone, renew, b]) q.add(item);
  q.delete(gone);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(fired, ['a', 'renew', 'b', 'renew', 'renew']);
  // empty again: a new item arms a fresh timer
  q.add({ due: performance.now() + 5, name: 'late' });
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(fired.at(-1), 'late');
});
