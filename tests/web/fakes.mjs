// Fakes for what call.js reaches through the browser: the WebSocket under signalling.js, and
// RTCPeerConnection / MediaStream under negotiation.js. They keep to the behaviour those modules
// rely on (events, signalling states, offer/answer) and record what was sent, so a test can play
// the server's part and read what the page would have put on the wire.

export const OPEN = 1;

/** A WebSocket the test drives: `open()`, `serverSends(message)`, `drop()`; `sent` holds frames. */
export class FakeWebSocket extends EventTarget {
  static CONNECTING = 0;
  static OPEN = OPEN;
  static CLOSED = 3;
  /** @type {FakeWebSocket[]} every socket made, newest last */
  static made = [];

  constructor(url) {
    super();
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    /** @type {object[]} parsed messages the client sent */
    this.sent = [];
    /** @type {number|undefined} the code the client closed this socket with */
    this.closedWith = undefined;
    FakeWebSocket.made.push(this);
  }

  static get latest() {
    return FakeWebSocket.made.at(-1);
  }

  send(text) {
    if (this.readyState !== OPEN) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(text));
  }

  /** The client closes: recorded in `closedWith` (a close frame's code matters to the server). */
  close(code = 1005) {
    this.closedWith = code;
    this.drop(code);
  }

  /** The server accepts: open, then `hello` as the real server sends it first (its resume
   * token is the peer id spelt backwards: distinct, and easy to check). */
  open(peer, extra = {}) {
    this.readyState = OPEN;
    this.dispatchEvent(new Event('open'));
    this.serverSends({
      type: 'hello', protocol: 2, peer, resume: tokenOf(peer), challenge: 'c'.repeat(43),
      limits: { max_peers: 8 }, ...extra,
    });
  }

  serverSends(message) {
    const event = new Event('message');
    event.data = JSON.stringify(message);
    this.dispatchEvent(event);
  }

  drop(code = 1006) {
    if (this.readyState === FakeWebSocket.CLOSED) return;
    this.readyState = FakeWebSocket.CLOSED;
    const event = new Event('close');
    event.code = code;
    this.dispatchEvent(event);
  }

  /** @returns {object[]} sent messages of one type */
  sentOf(type) {
    return this.sent.filter((message) => message.type === type);
  }
}

/** The resume token FakeWebSocket's `hello` gives `peer`. */
export function tokenOf(peer) {
  return [...peer].reverse().join('').replace(/^./, 'T');
}

export class FakeTrack extends EventTarget {
  /** A remote track starts `muted` (no packet yet); `unmute()` is its first audio arriving. */
  constructor(kind = 'audio', label = 'fake microphone', { muted = false } = {}) {
    super();
    this.kind = kind;
    this.label = label;
    this.enabled = true;
    this.readyState = 'live';
    this.muted = muted;
  }

  unmute() {
    this.muted = false;
    this.dispatchEvent(new Event('unmute'));
  }

  stop() {
    this.readyState = 'ended';
  }

  clone() {
    return new FakeTrack(this.kind, this.label);
  }
}

export class FakeMediaStream {
  constructor(tracks = []) {
    this.tracks = [...tracks];
  }

  getTracks() {
    return [...this.tracks];
  }

  getAudioTracks() {
    return this.tracks.filter((track) => track.kind === 'audio');
  }

  addTrack(track) {
    this.tracks.push(track);
  }

  removeTrack(track) {
    this.tracks = this.tracks.filter((t) => t !== track);
  }
}

/**
 * An RTCRtpSender: one encoding once negotiated; replaceTrack and setParameters are recorded,
 * and so is each getParameters (which stalls a real page while WebRTC's thread is busy).
 */
export class FakeSender {
  constructor(track, stream, pc) {
    this.track = track;
    this.stream = stream;
    this.pc = pc;
    this.maxBitrate = undefined;
    this.parameterReads = 0;
  }

  getParameters() {
    this.parameterReads += 1;
    const negotiated = this.pc.localDescription !== null && this.pc.remoteDescription !== null;
    return { encodings: negotiated ? [{ active: true, maxBitrate: this.maxBitrate }] : [] };
  }

  async setParameters(parameters) {
    this.maxBitrate = parameters.encodings[0].maxBitrate;
  }

  async replaceTrack(track) {
    this.track = track;
  }
}

/** A data channel that opens when the test says so; `sent` holds what the page sent. */
export class FakeDataChannel extends EventTarget {
  constructor(label, init) {
    super();
    this.label = label;
    this.init = init;
    this.readyState = 'connecting';
    this.sent = [];
  }

  send(text) {
    if (this.readyState !== 'open') throw new Error('send on a data channel that is not open');
    this.sent.push(JSON.parse(text));
  }

  open() {
    this.readyState = 'open';
    this.dispatchEvent(new Event('open'));
  }

  /** The peer sends `message` (an object, sent as JSON like the real peer does). */
  receive(message) {
    const event = new Event('message');
    event.data = typeof message === 'string' ? message : JSON.stringify(message);
    this.dispatchEvent(event);
  }

  close() {
    this.readyState = 'closed';
    this.dispatchEvent(new Event('close'));
  }
}

const SDP = (type, ufrag, data) => [
  'v=0', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0', `a=ice-ufrag:${ufrag}`,
  'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level', `a=fake-${type}`,
  ...(data ? ['m=application 9 UDP/DTLS/SCTP webrtc-datachannel', 'a=mid:1'] : []), '',
].join('\r\n');
let ufrags = 0;

/**
 * An RTCPeerConnection with the signalling state machine of the spec's offer/answer and no
 * network: `connect()` makes it "connected", `fail()` makes it "failed".
 */
export class FakeRTCPeerConnection extends EventTarget {
  /** @type {FakeRTCPeerConnection[]} */
  static made = [];

  constructor(configuration) {
    super();
    this.configuration = configuration;
    this.signalingState = 'stable';
    this.connectionState = 'new';
    this.iceConnectionState = 'new';
    this.iceGatheringState = 'new';
    this.localDescription = null;
    this.remoteDescription = null;
    this.senders = [];
    this.transceivers = [];
    this.candidates = [];
    this.restarts = 0;
    /** ICE credentials: new for each connection and each ICE restart, as in a browser. */
    this.ufrag = `ufrag${(ufrags += 1)}`;
    /** @type {FakeDataChannel[]} */
    this.channels = [];
    FakeRTCPeerConnection.made.push(this);
  }

  getSenders() {
    return [...this.senders];
  }

  getTransceivers() {
    return [...this.transceivers];
  }

  addTrack(track, stream) {
    const sender = new FakeSender(track, stream, this);
    this.senders.push(sender);
    // After a remote offer the track takes the offer's transceiver: nothing to negotiate.
    if (this.remoteDescription === null) {
      queueMicrotask(() => this.dispatchEvent(new Event('negotiationneeded')));
    }
    return sender;
  }

  createDataChannel(label, init) {
    const channel = new FakeDataChannel(label, init);
    this.channels.push(channel);
    // The first channel needs an application m-line: one to negotiate unless a remote offer
    // being answered has it already (a browser's rule).
    const offered = this.signalingState === 'have-remote-offer' && /^m=application/m.test(this.remoteDescription.sdp);
    if (this.channels.length === 1 && !offered) {
      queueMicrotask(() => this.dispatchEvent(new Event('negotiationneeded')));
    }
    return channel;
  }

  addTransceiver(kind, init) {
    this.transceivers.push({ kind, init });
    queueMicrotask(() => this.dispatchEvent(new Event('negotiationneeded')));
  }

  async setLocalDescription(description) {
    const type = description?.type ??
      (this.signalingState === 'have-remote-offer' ? 'answer' : 'offer');
    this.localDescription = { type, sdp: SDP(type, this.ufrag, this.channels.length > 0) };
    this.signalingState = type === 'offer' ? 'have-local-offer' : 'stable';
  }

  async setRemoteDescription(description) {
    if (description.type === 'offer' && this.signalingState === 'have-local-offer') {
      this.signalingState = 'stable'; // implicit rollback, as a polite peer does
    }
    this.remoteDescription = description;
    this.signalingState = description.type === 'offer' ? 'have-remote-offer' : 'stable';
  }

  async addIceCandidate(candidate) {
    this.candidates.push(candidate ?? null);
  }

  setConfiguration(configuration) {
    this.configuration = configuration;
  }

  restartIce() {
    this.restarts += 1;
    this.ufrag = `ufrag${(ufrags += 1)}`;
  }

  async getStats() {
    return this.stats ?? new Map(); // a test sets `stats` to what the link should report
  }

  close() {
    this.connectionState = 'closed';
    this.signalingState = 'closed';
    for (const channel of this.channels) channel.close();
  }

  connect() {
    this.setConnectionState('connected');
  }

  fail() {
    this.setConnectionState('failed');
  }

  setConnectionState(state) {
    this.connectionState = state;
    this.dispatchEvent(new Event('connectionstatechange'));
  }

  /** ICE gathered one host candidate (what the page then signals to the peer). */
  gatherCandidate() {
    const candidate = { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 };
    this.dispatchEvent(Object.assign(new Event('icecandidate'), { candidate }));
  }

  /** The remote side's audio arrives. */
  receiveTrack(stream = new FakeMediaStream([new FakeTrack()])) {
    const event = new Event('track');
    event.track = stream.getAudioTracks()[0];
    event.streams = [stream];
    this.dispatchEvent(event);
  }
}

/** Put the fakes where the browser's classes would be; returns a function that resets them. */
export function installFakes() {
  globalThis.WebSocket = FakeWebSocket;
  globalThis.RTCPeerConnection = FakeRTCPeerConnection;
  globalThis.MediaStream = FakeMediaStream;
  return () => {
    FakeWebSocket.made = [];
    FakeRTCPeerConnection.made = [];
  };
}

/** Let queued microtasks and promise chains (negotiation runs on one) settle. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve)); // not setTimeout, which tests may mock
}
