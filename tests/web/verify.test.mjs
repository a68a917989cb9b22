// verify.js without a browser: the shared test vector (the same one the Python tests check), the
// commit–reveal between two LinkVerifications, and a cheating reveal. Node has WebCrypto.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  LinkVerification, PROBLEMS, codeWords, commitmentOf, linkDigest, parseAttestation, roomDigest,
} from '../../src/xes/web/verify.js';

const VECTOR = JSON.parse(readFileSync(new URL('../support/verification_vector.json', import.meta.url)));
const FP = (last) => `sha-256 ${[...Array(31).keys()].map((n) => n.toString(16).padStart(2, '0').toUpperCase()).join(':')}:${last}`;
const NONCE = (digit) => digit.repeat(64);

test('the shared vector', async () => {
  const claims = [];
  for (const link of VECTOR.links) {
    const [one, other] = link.sides;
    for (const side of link.sides) assert.equal(await commitmentOf(side.nonce), side.commitment);
    const digest = await linkDigest(one, other);
    assert.equal(digest, link.digest);
    assert.equal(await linkDigest(other, one), link.digest);
    assert.deepEqual(codeWords(digest), link.words);
    claims.push({ peers: link.peers, fingerprints: [one.fingerprint, other.fingerprint], digest });
  }
  assert.equal(await roomDigest(claims), VECTOR.room.digest);
  assert.deepEqual(codeWords(VECTOR.room.digest), VECTOR.room.words);
});

/** Two LinkVerifications wired back to back; `tamper` may rewrite what Bob sends. */
async function pair(ada, bob, tamper = (message) => message) {
  const sides = {};
  sides.ada = new LinkVerification({
    send: (message) => queueMicrotask(() => sides.bob.receive(message)),
    fingerprints: async () => ada.fingerprints, nonce: () => ada.nonce,
  });
  sides.bob = new LinkVerification({
    send: (message) => queueMicrotask(() => sides.ada.receive(tamper(message))),
    fingerprints: async () => bob.fingerprints, nonce: () => bob.nonce,
  });
  sides.ada.start();
  sides.bob.start();
  for (let i = 0; i < 50 && (sides.ada.state === 'waiting' || sides.bob.state === 'waiting'); i++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  return sides;
}

test('honest ends agree; a middleman with its own certificates gives each end another code', async () => {
  const honest = await pair(
    { fingerprints: { local: FP('AA'), remote: FP('BB') }, nonce: NONCE('1') },
    { fingerprints: { local: FP('BB'), remote: FP('AA') }, nonce: NONCE('2') });
  assert.equal(honest.ada.state, 'verified');
  assert.deepEqual(honest.ada.words, honest.bob.words);
  const middle = await pair(
    { fingerprints: { local: FP('AA'), remote: FP('CC') }, nonce: NONCE('1') },
    { fingerprints: { local: FP('BB'), remote: FP('DD') }, nonce: NONCE('2') });
  assert.equal(middle.ada.state, 'verified');
  assert.notEqual(middle.ada.digest, middle.bob.digest);
});

test('a reveal that does not match its commitment breaks the link', async () => {
  const cheated = await pair(
    { fingerprints: { local: FP('AA'), remote: FP('BB') }, nonce: NONCE('1') },
    { fingerprints: { local: FP('BB'), remote: FP('AA') }, nonce: NONCE('2') },
    (message) => (message.type === 'reveal' ? { ...message, nonce: NONCE('3') } : message));
  assert.equal(cheated.ada.state, 'broken');
  assert.equal(cheated.ada.problem, PROBLEMS.badReveal);
  assert.equal(cheated.ada.words, null);
});

test('attestations are validated', () => {
  const good = { peer: 'B'.repeat(22), fingerprints: [FP('AA'), FP('BB')], digest: '0'.repeat(64) };
  assert.equal(parseAttestation('A'.repeat(22), { links: [good] }).length, 1);
  assert.equal(parseAttestation('A'.repeat(22), { links: [{ ...good, digest: 'x' }] }), null);
  assert.equal(parseAttestation('B'.repeat(22), { links: [good] }), null); // about itself
  assert.equal(parseAttestation('A'.repeat(22), { links: Array(17).fill(good) }), null);
});
