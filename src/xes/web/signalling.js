// The WebSocket to the XES server, as an EventTarget of parsed protocol messages.
//
// Losing this socket does not end a call: audio goes browser to browser, so links already up keep
// playing. The server keeps our session for a grace period after the socket goes (docs/protocol.md,
// "Resuming a session"), so this module reconnects with backoff and jitter and *resumes* that
// session: same peer id, the messages it missed replayed in order, nothing for the rest of the room
// to notice. Only when the server says the session is gone does the connection come back as a
// fresh one, and main.js rejoins as it would after a restart.

import { CLOSE_CODES, CLOSE_TO_RESUME, ProtocolError, parseServerMessage, resume } from './protocol.js';

/**
 * Connection states, in the order a healthy connection goes through them.
 * - `idle`: not started, or closed on purpose by {@link Signalling#close}.
 * - `connecting`: first attempt in progress.
 * - `open`: socket open and `hello` received (`peerId` is set), or our session resumed.
 * - `lost`: the socket closed or never opened; a reconnect (and resume) is under way.
 */
export const SignallingState = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting',
  OPEN: 'open',
  LOST: 'lost',
});

// Backoff: the n-th attempt in a row waits FIRST_RETRY_MS·2ⁿ, capped, times a random factor in
// [0.5, 1] so that clients cut off together (a server restart) do not come back in lockstep.
const FIRST_RETRY_MS = 500;
// While the server may still hold our session, try often enough to land inside its grace
// (20 s by default) and to be back soon after the network is; without one, back off further.
const MAX_RETRY_RESUMABLE_MS = 2000;
const MAX_RETRY_MS = 15000;
// A socket that neither opens nor greets within this is given up and tried again: a network that
// silently drops packets would otherwise keep one attempt pending for minutes.
const HANDSHAKE_TIMEOUT_MS = 15000;
// Client messages held while the socket is down and our session may resume (e.g. an ICE
// candidate a link trickles meanwhile), sent once it has; dropped if it cannot resume.
const MAX_HELD_MESSAGES = 256;
// The error code the server answers a `resume` with when the session cannot be resumed.
const SESSION_GONE = 'session-gone';

/**
 * The URL of the signalling socket on the page's own origin.
 * @param {Location} location
 * @returns {string}
 */
export function signallingUrl(location) {
  return `${location.protocol === 'https:' ? 'wss://' : 'ws://'}${location.host}/ws`;
}

/**
 * WebSocket wrapper. Events:
 * - `message` (CustomEvent, detail: the parsed server message; `hello` and `resumed` included;
 *   replayed duplicates are dropped before they get here),
 * - `statechange` (CustomEvent, detail: {state, previous, closeCode, resumed}); `resumed` is true
 *   when an `open` is the old session resumed, false when it is a fresh one,
 * - `protocolerror` (CustomEvent, detail: the ProtocolError for a frame that broke the contract).
 */
export class Signalling extends EventTarget {
  /**
   * @param {string} url `ws://` or `wss://` URL of `/ws`
   * @param {{reconnect?: boolean, random?: () => number,
   *          identify?: (challenge: string) => Promise<object>}} [options] `random` (in [0, 1))
   *   sets the backoff's jitter; `identify` makes the `identify` message for a connection's
   *   challenge: sent before a fresh session counts as open, so everything sent afterwards speaks
   *   for this identity. A resumed session keeps the identity it proved, so it is not sent then.
   */
  constructor(url, { reconnect = true, random = Math.random, identify = null } = {}) {
    super();
    this.url = url;
    this.reconnect = reconnect;
    this.random = random;
    this.identify = identify;
    /** @type {string} one of {@link SignallingState} */
    this.state = SignallingState.IDLE;
    /** @type {string|null} our peer id (from `hello`; unchanged by a resume) */
    this.peerId = null;
    /** @type {object|null} `hello.limits` of the current connection */
    this.limits = null;
    this.socket = null;
    this.attempts = 0;
    this.retryTimer = null;
    this.handshakeTimer = null;
    // The session to resume: {peer, token}. The token is a secret (it lets whoever holds it take
    // over our seat), so it lives only in this object's memory: never in storage, never logged.
    this.session = null;
    /** @type {number} `seq` of the last server message handled; 0 before any */
    this.lastSeq = 0;
    // The `hello` of a connection that is trying to resume: the fresh session we fall back to.
    this.pendingHello = null;
    this.resuming = false;
    this.held = [];
  }

  /** Open the socket (no-op if already open or connecting). */
  connect() {
    if (this.socket !== null) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.state !== SignallingState.LOST) this.setState(SignallingState.CONNECTING);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.resuming = false;
    this.pendingHello = null;
    socket.addEventListener('message', (event) => {
      if (socket !== this.socket) return;
      this.receive(event.data);
    });
    socket.addEventListener('close', (event) => {
      if (socket !== this.socket) return;
      this.lose(event.code);
    });
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = setTimeout(() => {
      if (socket === this.socket && this.state !== SignallingState.OPEN) {
        this.lose(null);
        // Not 1000/1001, which would tell the server we hang up and end the session at once.
        socket.close(CLOSE_TO_RESUME);
      }
    }, HANDSHAKE_TIMEOUT_MS);
  }

  /**
   * The socket is gone: report it and schedule the next attempt.
   * @param {number|null} closeCode
   */
  lose(closeCode) {
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.socket = null;
    this.resuming = false;
    this.pendingHello = null;
    if (this.state === SignallingState.IDLE) return;
    if (closeCode === CLOSE_CODES.REPLACED) {
      // Another connection resumed our session (the server says: do not reconnect).
      this.session = null;
      this.held = [];
      this.setState(SignallingState.IDLE, { closeCode });
      return;
    }
    this.setState(SignallingState.LOST, { closeCode });
    if (!this.reconnect) return;
    this.retryTimer = setTimeout(() => this.connect(), this.retryDelay(closeCode));
  }

  /**
   * How long to wait before the next attempt.
   * @param {number|null} closeCode of the socket just lost
   * @returns {number} milliseconds
   */
  retryDelay(closeCode) {
    // 1012: the server is restarting on purpose and has kept our session for its successor.
    if (closeCode === CLOSE_CODES.SERVICE_RESTART) return 0;
    const cap = this.session !== null ? MAX_RETRY_RESUMABLE_MS : MAX_RETRY_MS;
    const ceiling = Math.min(cap, FIRST_RETRY_MS * 2 ** Math.min(this.attempts, 16));
    this.attempts += 1;
    return ceiling * (0.5 + 0.5 * this.random());
  }

  /**
   * A promise for the next time the connection is `open` (at once if it already is).
   * @returns {Promise<void>}
   */
  whenOpen() {
    if (this.state === SignallingState.OPEN) return Promise.resolve();
    return new Promise((resolve) => {
      const onChange = () => {
        if (this.state === SignallingState.OPEN) {
          this.removeEventListener('statechange', onChange);
          resolve();
        }
      };
      this.addEventListener('statechange', onChange);
    });
  }

  /**
   * Send one message as JSON. While the socket is down and our session may resume, the message
   * is held and sent after the resume (dropped if the session turns out to be gone).
   * @param {object} message built with protocol.js
   * @returns {boolean} false when the message was dropped
   */
  send(message) {
    if (this.state === SignallingState.OPEN && this.socket !== null &&
        this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    if (this.state === SignallingState.LOST && this.session !== null &&
        this.held.length < MAX_HELD_MESSAGES) {
      this.held.push(message);
      return true;
    }
    return false;
  }

  /** Close on purpose: no reconnect, state back to `idle`, the session forgotten. */
  close() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.setState(SignallingState.IDLE);
    const socket = this.socket;
    this.socket = null;
    this.peerId = null;
    this.session = null;
    this.held = [];
    if (socket !== null) socket.close(1000);
  }

  /** @param {string|Blob} data */
  receive(data) {
    let message;
    try {
      if (typeof data !== 'string') throw new ProtocolError('server sent a binary frame');
      message = parseServerMessage(data);
    } catch (error) {
      this.dispatchEvent(new CustomEvent('protocolerror', { detail: error }));
      return;
    }
    if (message.type === 'hello') {
      this.limits = message.limits ?? null;
      if (this.session !== null && this.state === SignallingState.LOST) {
        // A new socket after a lost one: its first message asks for our old seat back. This
        // hello's own session is what we fall back to if the server no longer has it.
        this.resuming = true;
        this.pendingHello = message;
        const { peer, token } = this.session;
        this.socket.send(JSON.stringify(resume({ peer, token, lastSeq: this.lastSeq })));
        return;
      }
      this.startFresh(message);
      return;
    }
    if (this.resuming) {
      if (message.type === 'resumed') {
        this.finishResume(message);
        return;
      }
      if (message.type === 'error' && message.ref === 'resume') {
        // session-gone (or a code a later server adds): the old seat is lost, start afresh.
        if (message.code !== SESSION_GONE) {
          console.warn('XES: the server refused to resume the session:', message.code);
        }
        this.resuming = false;
        this.held = [];
        if (this.pendingHello !== null) this.startFresh(this.pendingHello);
        return;
      }
    }
    if (typeof message.seq === 'number') {
      // A replay can repeat what we already handled before the socket went: handle it once.
      if (message.seq <= this.lastSeq) return;
      this.lastSeq = message.seq;
    }
    this.dispatchEvent(new CustomEvent('message', { detail: message }));
  }

  /**
   * Prove our identity on a fresh session (its `hello.challenge`), then count it as open.
   * @param {WebSocket} socket @param {string} challenge
   */
  async sendIdentity(socket, challenge) {
    let message;
    try {
      message = await this.identify(challenge);
    } catch (error) {
      this.dispatchEvent(new CustomEvent('protocolerror', { detail: error }));
      return;
    }
    if (socket !== this.socket) return; // that connection is gone; the next one signs its own
    socket.send(JSON.stringify(message));
    this.setState(SignallingState.OPEN, { resumed: false });
  }

  /**
   * A new session: a first connection, or the fallback when the old one could not resume.
   * @param {object} hello
   */
  startFresh(hello) {
    this.pendingHello = null;
    this.peerId = hello.peer;
    this.session = typeof hello.resume === 'string' ? { peer: hello.peer, token: hello.resume } : null;
    this.lastSeq = 0;
    this.held = [];
    this.opened();
    this.dispatchEvent(new CustomEvent('message', { detail: hello }));
    if (this.identify === null) {
      this.setState(SignallingState.OPEN, { resumed: false });
    } else {
      this.sendIdentity(this.socket, hello.challenge);
    }
  }

  /**
   * The server gave us our old seat back. It announces `resumed`, then replays what we missed.
   * @param {object} resumed
   */
  finishResume(resumed) {
    this.resuming = false;
    if (this.pendingHello !== null) this.limits = this.pendingHello.limits ?? this.limits;
    this.pendingHello = null;
    this.peerId = resumed.peer;
    this.session = { peer: resumed.peer, token: resumed.resume }; // the old token stops working
    this.opened();
    this.setState(SignallingState.OPEN, { resumed: true });
    this.dispatchEvent(new CustomEvent('message', { detail: resumed }));
    const held = this.held;
    this.held = [];
    for (const message of held) this.send(message);
  }

  opened() {
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.attempts = 0;
  }

  /**
   * @param {string} state
   * @param {{closeCode?: number|null, resumed?: boolean}} [details]
   */
  setState(state, { closeCode = null, resumed = false } = {}) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('statechange', { detail: { state, previous, closeCode, resumed } }));
  }
}
