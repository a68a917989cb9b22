// Safety codes: proof that nobody sits in the middle of a link, or of the whole room.
// No DOM: main.js shows what this module computes. The construction, its argument and what it
// does not prove are in docs/verification.md; src/xes/core/verification.py is the same in
// Python, and both are checked against one shared test vector.
//
// Theory of operation
// - Per link. Once a link's data channel is open (DTLS is up), each side reads both DTLS
//   certificate fingerprints from getStats (the certificates the connection really uses, not
//   the SDP the server relayed), draws a 32-byte nonce, and sends `commit` = H(nonce). When it
//   has sent its own commitment and received the peer's, it sends `reveal` (the nonce), and it
//   checks the peer's reveal against the peer's commitment. The link digest hashes both
//   fingerprints and both nonces; its first 33 bits are the link code, three words.
//   A middleman terminating DTLS on both sides has different certificates on each side, so the
//   two ends hash different fingerprints; and since each side reveals its nonce only after the
//   other committed, the middleman must commit before it learns the nonce that makes one side's
//   code random to it: it matches the other side's code with probability 2^-33, once.
// - Per room. Each member attests over every data channel the links it has verified: for each,
//   the peer's id, both fingerprints and the link digest. Every client keeps, for each pair of
//   members, the claims of both ends; the room code hashes every distinct claim about the
//   pairs of current members. Two ends that disagree about their link (an intercepted link)
//   are a contradiction: an alert at once, and a room code that differs from everyone else's.
// - Nothing of this goes through the server: only the two peers' data channel carries it.

import { WORDS } from './wordlist.js';

/** Version and purpose tag of every hash input, so no hash here can be confused with another. */
export const DOMAIN = 'xes-verify-v1';
/** Words per code; 11 bits each (2,048 words). */
export const CODE_WORDS = 3;
export const CODE_BITS = CODE_WORDS * 11;
export const NONCE_BYTES = 32;
/** Most links one member can attest: a room holds at most 8 people; room to spare. */
export const MAX_ATTESTED_LINKS = 16;

const HEX64 = /^[0-9a-f]{64}$/;
const FINGERPRINT = /^sha-256 [0-9A-F]{2}(:[0-9A-F]{2}){31}$/;
const PEER_ID = /^[A-Za-z0-9_-]{22}$/;

/** Why a link's verification failed, in words for the page. */
export const PROBLEMS = Object.freeze({
  badReveal: 'their nonce does not match their commitment',
  outOfOrder: 'they revealed before committing',
  noFingerprints: 'the browser did not report the DTLS certificates',
});

/**
 * A fingerprint in the one form every hash input uses: `sha-256 AB:CD:…`.
 * @param {string} algorithm e.g. "sha-256"
 * @param {string} value colon-separated hex
 * @returns {string|null} null when it is not a SHA-256 fingerprint
 */
export function normalizeFingerprint(algorithm, value) {
  const text = `${String(algorithm).toLowerCase()} ${String(value).toUpperCase()}`;
  return FINGERPRINT.test(text) ? text : null;
}

/** @param {string} text @returns {Promise<string>} lower-case hex SHA-256 of its UTF-8 */
export async function sha256Hex(text) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** @returns {string} a fresh nonce, hex */
export function randomNonce() {
  return [...crypto.getRandomValues(new Uint8Array(NONCE_BYTES))]
    .map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** @param {string} nonce hex @returns {Promise<string>} the commitment sent before the nonce */
export function commitmentOf(nonce) {
  return sha256Hex(`${DOMAIN} commit\n${nonce}\n`);
}

/**
 * The link digest from both sides' fingerprint and nonce, in an order both ends agree on.
 * @param {{fingerprint: string, nonce: string}} one
 * @param {{fingerprint: string, nonce: string}} other
 * @returns {Promise<string>} hex
 */
export function linkDigest(one, other) {
  const key = (side) => `${side.fingerprint}\n${side.nonce}\n`;
  const [first, second] = [key(one), key(other)].sort();
  return sha256Hex(`${DOMAIN} link\n${first}${second}`);
}

/**
 * One line per claim about a link, in canonical form (ids and fingerprints sorted).
 * @param {{peers: string[], fingerprints: string[], digest: string}} claim
 * @returns {string}
 */
export function claimLine({ peers, fingerprints, digest }) {
  return [...[...peers].sort(), ...[...fingerprints].sort(), digest].join(' ');
}

/**
 * The room digest over every distinct claim (see claimLine).
 * @param {Iterable<{peers: string[], fingerprints: string[], digest: string}>} claims
 * @returns {Promise<string>} hex
 */
export function roomDigest(claims) {
  const lines = [...new Set([...claims].map(claimLine))].sort();
  return sha256Hex(`${DOMAIN} room\n${lines.map((line) => `${line}\n`).join('')}`);
}

/**
 * The words of a digest: its first CODE_BITS bits, 11 bits per word, most significant first.
 * @param {string} digest hex
 * @returns {string[]}
 */
export function codeWords(digest) {
  let bits = BigInt(`0x${digest.slice(0, 16)}`) >> BigInt(64 - CODE_BITS);
  const words = [];
  for (let i = 0; i < CODE_WORDS; i++) {
    words.unshift(WORDS[Number(bits & 2047n)]);
    bits >>= 11n;
  }
  return words;
}

/** How long to wait for getStats to report the certificates once the data channel is open. */
export const FINGERPRINT_WAIT_MS = 10_000;
const FINGERPRINT_POLL_MS = 100;

/**
 * Both certificate fingerprints of a connection, from getStats. Chromium may open the data
 * channel a moment before its stats name the remote certificate, so this asks again until
 * FINGERPRINT_WAIT_MS have passed.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<{local: string, remote: string}|null>} null when never reported
 */
export async function certificateFingerprints(pc) {
  const deadline = performance.now() + FINGERPRINT_WAIT_MS;
  for (;;) {
    const pair = await reportedFingerprints(pc);
    if (pair !== null || performance.now() > deadline || pc.connectionState === 'closed') return pair;
    await new Promise((resolve) => setTimeout(resolve, FINGERPRINT_POLL_MS));
  }
}

/**
 * Ours from the transport's `localCertificateId`; theirs from `remoteCertificateId`, or, while
 * Chromium's stats do not name it yet (seen with aiortc peers: the channel is open, the stats
 * lag), from the certificate the DTLS transport itself holds (getRemoteCertificates, DER),
 * hashed here. Both are the certificates of the handshake, never the SDP's fingerprint lines.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<{local: string, remote: string}|null>}
 */
async function reportedFingerprints(pc) {
  const stats = await pc.getStats();
  for (const report of stats.values()) {
    if (report.type !== 'transport' || !report.localCertificateId) continue;
    const local = stats.get(report.localCertificateId);
    const remote = report.remoteCertificateId ? stats.get(report.remoteCertificateId) : undefined;
    const localFingerprint = local ? normalizeFingerprint(local.fingerprintAlgorithm, local.fingerprint) : null;
    const remoteFingerprint = remote ? normalizeFingerprint(remote.fingerprintAlgorithm, remote.fingerprint)
      : await transportRemoteFingerprint(pc);
    if (localFingerprint && remoteFingerprint) return { local: localFingerprint, remote: remoteFingerprint };
  }
  return null;
}

/** @param {RTCPeerConnection} pc @returns {Promise<string|null>} */
async function transportRemoteFingerprint(pc) {
  const certificates = pc.sctp?.transport?.getRemoteCertificates?.() ?? [];
  if (certificates.length === 0) return null;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', certificates[0]));
  const hex = [...digest].map((byte) => byte.toString(16).padStart(2, '0').toUpperCase());
  return normalizeFingerprint('sha-256', hex.join(':'));
}

/**
 * The commit–reveal with one peer over its data channel. Events: `change` (no detail) whenever
 * `state` changes: "waiting" → "verified" (digest and words set) or "broken" (problem set).
 */
export class LinkVerification extends EventTarget {
  /**
   * @param {object} options
   * @param {(message: object) => void} options.send sends one message on the link's channel
   * @param {() => Promise<{local: string, remote: string}|null>} options.fingerprints
   * @param {() => string} [options.nonce] draws the nonce (tests pass their own)
   */
  constructor({ send, fingerprints, nonce = randomNonce }) {
    super();
    this.send = send;
    this.readFingerprints = fingerprints;
    this.drawNonce = nonce;
    this.state = 'waiting';
    /** @type {{local: string, remote: string}|null} */
    this.fingerprints = null;
    this.nonce = null;
    this.committed = false;
    this.revealed = false;
    this.peerCommitment = null;
    this.peerNonce = null;
    this.digest = null;
    /** @type {string[]|null} */
    this.words = null;
    this.problem = null;
    this.started = false;
    this.queue = Promise.resolve();
  }

  /** Start once the channel is open: read the certificates, commit. Idempotent. */
  start() {
    if (this.started) return;
    this.started = true;
    this.enqueue(async () => {
      this.fingerprints = await this.readFingerprints();
      if (!this.fingerprints) {
        this.fail(PROBLEMS.noFingerprints);
        return;
      }
      this.nonce = this.drawNonce();
      const commitment = await commitmentOf(this.nonce);
      this.committed = true;
      this.send({ type: 'commit', commitment });
      await this.progress();
    });
  }

  /**
   * A `commit` or `reveal` from the peer (already checked to be one of those types).
   * @param {object} message
   */
  receive(message) {
    this.enqueue(async () => {
      if (this.state !== 'waiting') return;
      if (message.type === 'commit') {
        if (this.peerCommitment === null && HEX64.test(message.commitment ?? '')) {
          this.peerCommitment = message.commitment;
        }
      } else if (message.type === 'reveal') {
        if (this.peerCommitment === null) {
          this.fail(PROBLEMS.outOfOrder);
          return;
        }
        if (this.peerNonce !== null || !HEX64.test(message.nonce ?? '')) return;
        if ((await commitmentOf(message.nonce)) !== this.peerCommitment) {
          this.fail(PROBLEMS.badReveal);
          return;
        }
        this.peerNonce = message.nonce;
      }
      await this.progress();
    });
  }

  /** @param {() => Promise<void>} step */
  enqueue(step) {
    // One message at a time, in order: a reveal must see the commitment that came before it.
    this.queue = this.queue.then(step).catch((error) => this.fail(String(error)));
  }

  async progress() {
    if (this.state !== 'waiting' || !this.committed) return;
    if (this.peerCommitment !== null && !this.revealed) {
      this.revealed = true;
      this.send({ type: 'reveal', nonce: this.nonce });
    }
    if (this.peerNonce === null) return;
    this.digest = await linkDigest(
      { fingerprint: this.fingerprints.local, nonce: this.nonce },
      { fingerprint: this.fingerprints.remote, nonce: this.peerNonce },
    );
    this.words = codeWords(this.digest);
    this.setState('verified');
  }

  /** @param {string} problem */
  fail(problem) {
    if (this.state === 'broken') return;
    this.problem = problem;
    this.setState('broken');
  }

  /** @param {string} state */
  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('change'));
  }
}

/**
 * Check an `attest` message and turn it into claims, or null when malformed.
 * @param {string} attester the peer id of the link it came over
 * @param {object} message
 * @returns {{peers: string[], fingerprints: string[], digest: string}[]|null}
 */
export function parseAttestation(attester, message) {
  const links = message.links;
  if (!Array.isArray(links) || links.length > MAX_ATTESTED_LINKS) return null;
  const claims = [];
  for (const link of links) {
    if (link === null || typeof link !== 'object') return null;
    const { peer, fingerprints, digest } = link;
    if (!PEER_ID.test(peer ?? '') || peer === attester || !HEX64.test(digest ?? '')) return null;
    if (!Array.isArray(fingerprints) || fingerprints.length !== 2 ||
        !fingerprints.every((fp) => typeof fp === 'string' && FINGERPRINT.test(fp))) return null;
    claims.push({ peers: [attester, peer], fingerprints: [...fingerprints], digest });
  }
  return claims;
}

/**
 * The room code: this member's link verifications plus the other members' attestations.
 * Attach it to a Mesh (it listens to `channelopen`, `data` and `removed`). Events: `change`
 * (call `summary()`), `alert` (detail: {key, text}) for a problem the client found itself.
 */
export class RoomVerification extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.selfId our peer id
   * @param {import('./mesh.js').Mesh} options.mesh
   * @param {(peerId: string) => string} options.nameOf display name of a member, for alerts
   */
  constructor({ selfId, mesh, nameOf }) {
    super();
    this.selfId = selfId;
    this.mesh = mesh;
    this.nameOf = nameOf;
    /** @type {Map<string, LinkVerification>} */
    this.links = new Map();
    /** @type {Map<string, {peers: string[], fingerprints: string[], digest: string}[]>} */
    this.attestations = new Map();
    this.alerted = new Set();
    this.current = { complete: false, words: null, contradictions: [], links: new Map() };
    this.generation = 0;
    this.listeners = [
      ['channelopen', (event) => this.onLinkReady(event.detail.peerId)],
      ['settled', (event) => this.onLinkReady(event.detail.peerId)],
      ['data', (event) => this.onData(event.detail.peerId, event.detail.detail)],
      ['removed', (event) => this.onRemoved(event.detail.peerId)],
    ];
    for (const [type, listener] of this.listeners) mesh.addEventListener(type, listener);
    // Links whose channel opened before we were attached.
    for (const peerId of mesh.links.keys()) this.onLinkReady(peerId);
  }

  /** Stop listening (the call ended). */
  detach() {
    for (const [type, listener] of this.listeners) this.mesh.removeEventListener(type, listener);
  }

  /**
   * Take a link's check messages once its channel is open, and start checking it (read the
   * certificates, commit) once the link is settled too: the certificate read waits for WebRTC's
   * signalling thread, which must first bring the voice up (negotiation.js, SETTLE_FALLBACK_MS).
   * The other end may commit meanwhile; it cannot reveal before our commitment arrives.
   * @param {string} peerId
   */
  onLinkReady(peerId) {
    const link = this.mesh.links.get(peerId);
    if (!link || !link.channelOpen) return;
    const known = this.links.get(peerId);
    if (known) {
      if (link.settled) known.start();
      return;
    }
    const verification = new LinkVerification({
      send: (message) => link.sendData(message),
      fingerprints: () => certificateFingerprints(link.pc),
    });
    this.links.set(peerId, verification);
    verification.addEventListener('change', () => {
      if (verification.state === 'broken') {
        this.alert(`reveal:${peerId}`, `Safety check failed with ${this.nameOf(peerId)}: ` +
          `${verification.problem}. Someone may be in the middle of this link.`);
      }
      if (verification.state === 'verified') this.attest();
      this.update();
    });
    if (link.settled) verification.start();
    this.attest(peerId); // what we verified so far, so the newcomer can build the room code
    this.update();
  }

  /**
   * @param {string} peerId
   * @param {object} message
   */
  onData(peerId, message) {
    if (message.type === 'commit' || message.type === 'reveal') {
      const verification = this.links.get(peerId);
      if (verification) verification.receive(message);
    } else if (message.type === 'attest') {
      const claims = parseAttestation(peerId, message);
      if (claims === null) return;
      this.attestations.set(peerId, claims);
      this.update();
    }
  }

  /** @param {string} peerId */
  onRemoved(peerId) {
    this.links.delete(peerId);
    this.attestations.delete(peerId);
    this.attest();
    this.update();
  }

  /** Our verified links, as claims. */
  ownClaims() {
    const claims = [];
    for (const [peerId, verification] of this.links) {
      if (verification.state !== 'verified') continue;
      claims.push({
        peers: [this.selfId, peerId],
        fingerprints: [verification.fingerprints.local, verification.fingerprints.remote],
        digest: verification.digest,
      });
    }
    return claims;
  }

  /** Tell one peer (or all) which links we have verified. */
  attest(onlyTo = null) {
    const links = this.ownClaims().map(({ peers, fingerprints, digest }) => ({
      peer: peers[1], fingerprints, digest,
    }));
    for (const [peerId, link] of this.mesh.links) {
      if (onlyTo !== null && peerId !== onlyTo) continue;
      if (link.channelOpen) link.sendData({ type: 'attest', links });
    }
  }

  /** @param {string} key @param {string} text */
  alert(key, text) {
    if (this.alerted.has(key)) return;
    this.alerted.add(key);
    this.dispatchEvent(new CustomEvent('alert', { detail: { key, text } }));
  }

  /** Recompute the room code; emits `change` when done (the latest computation wins). */
  async update() {
    const generation = ++this.generation;
    // Members whose link is still to come count too: the room code waits for them.
    const members = [this.selfId, ...this.mesh.members()];
    const memberSet = new Set(members);
    const byPair = new Map(); // "id id" -> Map(attester -> claim line)
    const all = [];
    const record = (attester, claim) => {
      if (!claim.peers.every((id) => memberSet.has(id))) return;
      const pairKey = [...claim.peers].sort().join(' ');
      if (!byPair.has(pairKey)) byPair.set(pairKey, new Map());
      byPair.get(pairKey).set(attester, claimLine(claim));
      all.push(claim);
    };
    for (const claim of this.ownClaims()) record(this.selfId, claim);
    for (const [attester, claims] of this.attestations) {
      if (memberSet.has(attester)) for (const claim of claims) record(attester, claim);
    }
    let complete = true;
    const contradictions = [];
    for (let i = 0; i < members.length; i++) {
      for (let j = i + 1; j < members.length; j++) {
        const pairKey = [members[i], members[j]].sort().join(' ');
        const claims = byPair.get(pairKey) ?? new Map();
        if (!claims.has(members[i]) || !claims.has(members[j])) complete = false;
        if (new Set(claims.values()).size > 1) contradictions.push([members[i], members[j]]);
      }
    }
    for (const [a, b] of contradictions) {
      const names = [a, b].map((id) => (id === this.selfId ? 'you' : this.nameOf(id)));
      this.alert(`contradiction:${[a, b].sort().join(' ')}`, `Safety check failed: ${names[0]} and ` +
        `${names[1]} see different keys for their link. Someone may be in the middle of it.`);
    }
    const digest = members.length > 1 && complete ? await roomDigest(all) : null;
    if (generation !== this.generation) return;
    this.current = {
      complete: digest !== null,
      digest,
      words: digest === null ? null : codeWords(digest),
      contradictions,
      links: new Map([...this.links].map(([peerId, v]) => [peerId, {
        state: v.state, words: v.words, problem: v.problem,
      }])),
    };
    this.dispatchEvent(new CustomEvent('change'));
  }

  /**
   * What the page shows: the room code once every link of every member is attested by both
   * ends, each link's code and state, and the pairs whose ends disagree.
   * @returns {{complete: boolean, digest: string|null, words: string[]|null,
   *   contradictions: string[][], links: Map<string, {state: string, words: string[]|null, problem: string|null}>}}
   */
  summary() {
    return this.current;
  }
}
