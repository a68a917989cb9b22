// LinkStats (stats.js): which links it asks for their stats, and when.

import assert from 'node:assert/strict';
import test from 'node:test';

import { LinkStats, SET_UP_POLL_GAP_MS } from '../../src/xes/web/stats.js';

/** A link in a given state that counts the getStats calls made on it. */
function link(connectionState) {
  return {
    connectionState,
    asked: 0,
    async getStats() {
      this.asked += 1;
      return new Map();
    },
  };
}

test('while a link is being set up, links already read wait (5 s at most); one just connected is read at once', async () => {
  const ada = link('connected');
  const bob = link('connected');
  const links = new Map([['ada', ada], ['bob', bob]]);
  let now = 0;
  const stats = new LinkStats(() => links, 1000, () => now);
  const updates = [];
  stats.addEventListener('update', ({ detail }) => updates.push([...detail.keys()]));
  await stats.poll();
  assert.deepEqual([ada.asked, bob.asked], [1, 1], 'nothing being set up: every link is read');

  const carol = link('connecting');
  links.set('carol', carol);
  await stats.poll();
  assert.deepEqual([ada.asked, bob.asked, carol.asked], [1, 1, 0],
    'Carol\'s link is being set up: nobody is asked, her handshake has the threads');

  const dave = link('new');
  links.set('dave', dave);
  carol.connectionState = 'connected';
  await stats.poll();
  assert.deepEqual([ada.asked, bob.asked, carol.asked], [1, 1, 1], 'Carol\'s path is read once it is up');
  now += 1000;
  await stats.poll();
  assert.equal(carol.asked, 1, 'and not again while Dave\'s link is being set up');
  now += SET_UP_POLL_GAP_MS;
  await stats.poll();
  assert.deepEqual([ada.asked, bob.asked, carol.asked], [2, 2, 2],
    'unless that takes long: the quality warnings judge the last few seconds');

  dave.connectionState = 'failed';
  await stats.poll();
  assert.deepEqual([ada.asked, bob.asked, carol.asked, dave.asked], [3, 3, 3, 1], 'all set up: all read');
  assert.deepEqual(updates.at(-1), ['ada', 'bob', 'carol', 'dave']);
});
