// The WebSocket to the XES server, as an EventTarget of parsed protocol messages.
//
// Losing this socket does not end a call: audio goes browser to browser, so links already up keep
// playing. This module only reports the loss and reconnects with backoff; main.js decides what to
// show and rejoins the room, since the server gives every connection a fresh peer id.

import { parseServerMessage, ProtocolError } from './protocol.js';

/**
 * Connection states, in the order a healthy connection goes through them.
 * - `idle`: not started, or closed on purpose by {@link Signalling#close}.
 * - `connecting`: first attempt in progress.
 * - `open`: socket open and `hello` received (`peerId` is set).
 * - `lost`: the socket closed or never opened; a reconnect is scheduled.
 */
export const SignallingState = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting',
  OPEN: 'open',
  LOST: 'lost',
});

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 15000;

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
 * - `message` (CustomEvent, detail: the parsed server message; `hello` included),
 * - `statechange` (CustomEvent, detail: {state, previous, closeCode}),
 * - `protocolerror` (CustomEvent, detail: the ProtocolError for a frame that broke the contract).
 */
export class Signalling extends EventTarget {
  /**
   * @param {string} url `ws://` or `wss://` URL of `/ws`
   * @param {{reconnect?: boolean}} [options]
   */
  constructor(url, { reconnect = true } = {}) {
    super();
    this.url = url;
    this.reconnect = reconnect;
    /** @type {string} one of {@link SignallingState} */
    this.state = SignallingState.IDLE;
    /** @type {string|null} our peer id on the current connection (from `hello`) */
    this.peerId = null;
    /** @type {object|null} `hello.limits` of the current connection */
    this.limits = null;
    this.socket = null;
    this.retryMs = FIRST_RETRY_MS;
    this.retryTimer = null;
  }

  /** Open the socket (no-op if already open or connecting). */
  connect() {
    if (this.socket !== null) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.state !== SignallingState.LOST) this.setState(SignallingState.CONNECTING);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener('message', (event) => {
      if (socket !== this.socket) return;
      this.receive(event.data);
    });
    socket.addEventListener('close', (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.peerId = null;
      if (this.state === SignallingState.IDLE) return;
      this.setState(SignallingState.LOST, event.code);
      if (this.reconnect) {
        this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      }
    });
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
   * Send one message as JSON.
   * @param {object} message built with protocol.js
   * @returns {boolean} false when the socket is not open (the message is dropped)
   */
  send(message) {
    if (this.socket === null || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  /**
   * Replace an open socket with a new one at once, as after a loss (state `lost`, then `open`),
   * or reconnect a lost one now rather than after the backoff.
   * For a network change: the socket's TCP connection belongs to an address we no longer have,
   * and would only be found dead by a heartbeat, long after.
   */
  renew() {
    if (this.state === SignallingState.LOST && this.socket === null) {
      // Already lost with the old network: retry now instead of after the backoff.
      this.retryMs = FIRST_RETRY_MS;
      this.connect();
      return;
    }
    if (this.socket === null || this.state !== SignallingState.OPEN) return;
    const old = this.socket;
    this.socket = null;
    this.peerId = null;
    old.close(1000);
    this.setState(SignallingState.LOST);
    this.connect();
  }

  /** Close on purpose: no reconnect, state back to `idle`. */
  close() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.setState(SignallingState.IDLE);
    const socket = this.socket;
    this.socket = null;
    this.peerId = null;
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
      this.peerId = message.peer;
      this.limits = message.limits ?? null;
      this.retryMs = FIRST_RETRY_MS;
      this.setState(SignallingState.OPEN);
    }
    this.dispatchEvent(new CustomEvent('message', { detail: message }));
  }

  /**
   * @param {string} state
   * @param {number|null} [closeCode]
   */
  setState(state, closeCode = null) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('statechange', { detail: { state, previous, closeCode } }));
  }
}
