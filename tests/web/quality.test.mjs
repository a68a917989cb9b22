// quality.js: the thresholds behind "Poor connection", and the Opus bitrate per link.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  LOSS_WINDOW_MS, POOR, RTP_HEADER_BPS, UPLINK_BUDGET_BPS, describeNumbers, judge, opusBitrate, playedLevel,
  sample,
} from '../../src/xes/web/quality.js';

/** A getStats() result with one inbound audio stream and a nominated pair. */
function stats({ received, lost, jitter = 0.004, rtt = 0.02 }) {
  return new Map([
    ['in', { type: 'inbound-rtp', kind: 'audio', packetsReceived: received, packetsLost: lost, jitter }],
    ['pair', { type: 'candidate-pair', nominated: true, currentRoundTripTime: rtt }],
  ]);
}

test('a full room stays within the uplink budget, a small one gets the best voice', () => {
  assert.deepEqual([2, 3, 4, 5, 6, 7, 8].map(opusBitrate),
    [40_000, 40_000, 40_000, 40_000, 40_000, 28_000, 24_000]);
  for (const people of [7, 8]) {
    assert.ok((people - 1) * (opusBitrate(people) + RTP_HEADER_BPS) <= UPLINK_BUDGET_BPS, `${people}`);
  }
});

test('loss is judged over the last five seconds, so a link recovers from an old burst', () => {
  const burst = [
    sample(stats({ received: 0, lost: 0 }), 0),
    sample(stats({ received: 150, lost: 100 }), 5000),
  ];
  const bad = judge(burst);
  assert.equal(bad.lossPercent, 40);
  assert.equal(bad.poor, '40% of the audio is lost');
  const later = [...burst, sample(stats({ received: 400, lost: 100 }), 5000 + LOSS_WINDOW_MS)];
  const good = judge(later);
  assert.equal(good.lossPercent, 0);
  assert.equal(good.poor, null);
});

test('each threshold alone makes a link poor, and just under it does not', () => {
  const at = (fields) => judge([sample(stats({ received: 0, lost: 0 }), 0), sample(stats(fields), 1000)]);
  assert.equal(at({ received: 80, lost: 20 }).poor, null, `${POOR.lossPercent}% is not over`);
  assert.match(at({ received: 79, lost: 21 }).poor, /21% of the audio is lost/);
  assert.equal(at({ received: 100, lost: 0, rtt: 1.5 }).poor, null);
  assert.match(at({ received: 100, lost: 0, rtt: 1.6 }).poor, /1\.6 s to go there and back/);
  assert.equal(at({ received: 100, lost: 0, jitter: 0.1 }).poor, null);
  assert.match(at({ received: 100, lost: 0, jitter: 0.101 }).poor, /unevenly/);
});

test('the detail view names every number, and says when one is unknown', () => {
  const quality = judge([sample(stats({ received: 0, lost: 0 }), 0), sample(stats({ received: 99, lost: 1 }), 1000)]);
  assert.equal(describeNumbers(quality), 'Round trip 20 ms · Loss 1.0% · Jitter 4 ms');
  assert.equal(describeNumbers(judge([])), 'Round trip unknown · Loss unknown · Jitter unknown');
});

/** A getStats() result with the audio played so far on one inbound stream. */
function played(totalAudioEnergy, totalSamplesDuration) {
  return new Map([['in', { type: 'inbound-rtp', kind: 'audio', totalAudioEnergy, totalSamplesDuration }]]);
}

test('how loud a voice played between two polls is its energy over the seconds played', () => {
  // One second at a mean square of 0.01 (-20 dB), after ten seconds of anything.
  const samples = [sample(played(3.7, 10), 0), sample(played(3.71, 11), 1000)];
  assert.ok(Math.abs(playedLevel(samples) - -20) < 1e-9, `${playedLevel(samples)}`);
  // Only the last interval counts: loud before, silent now.
  const quiet = [...samples, sample(played(3.71, 12), 2000)];
  assert.equal(playedLevel(quiet), -Infinity);
});

test('no level before two polls, nor when nothing played between them', () => {
  assert.equal(playedLevel([]), -Infinity);
  assert.equal(playedLevel([sample(played(1, 1), 0)]), -Infinity);
  assert.equal(playedLevel([sample(played(1, 1), 0), sample(played(1, 1), 1000)]), -Infinity);
  // A browser without these counters reads as silence, not as an error.
  assert.equal(playedLevel([sample(new Map(), 0), sample(new Map(), 1000)]), -Infinity);
});
