// One RTCPeerConnection to one remote peer, negotiated with the "perfect negotiation" pattern of
// webrtc/samples (src/content/peerconnection/perfect-negotiation/js/peer.js).
//
// Theory of operation
// - Who offers first is decided by the server, not by a race: the newcomer (the peer that found
//   the other in `joined.peers`) is the `initiator`. It adds its microphone track and sends the
//   offer at once, without waiting for the `negotiationneeded` that adding the track queues. The
//   member already there adds no track until that offer arrives, so it never fires
//   `negotiationneeded` on its own and cannot cross offers on join. After setRemoteDescription(offer), addTrack reuses the transceiver the offer created,
//   so the answer is sendrecv and nothing needs renegotiating.
// - A failed link is restarted (ICE restart) by the side that made the first offer.
// - A link that has not connected within LINK_CONNECT_TIMEOUT_MS, or fails again after the
//   restart, emits `linkfailure` with a plain-words reason, so the page never shows
//   "Connecting…" forever (Chromium alone never says "failed" when no candidate was gathered).
// - Any later renegotiation (ICE restart, for example) may glare. Then the `polite` side (told by
//   the server per pair) rolls back its own offer, and the impolite side ignores the incoming one.
//   A peer that cannot roll back (aiortc) is always made impolite by the server, so the browser
//   facing it is polite and never needs the other side to roll back.
// - Signals from the other side are handled strictly one at a time, in arrival order, on a
//   promise chain: the async steps of one must not interleave with the next.
// - Each link carries one data channel, negotiated out of band (`negotiated: true, id: 0`), so
//   there is no in-band open message. Toward another browser the initiator creates it once the
//   link is settled (the voice flows): the channel's m-line then comes in a second offer, and
//   the first offer, its answer and the start of the call carry the audio alone. Each end's
//   SCTP set-up costs WebRTC's threads tens of ms on a busy machine, and in the first offer
//   it delayed the first word heard by as much (bench/browser_bench.py's timeline). Toward a
//   peer that cannot roll back (we are then the polite initiator: aiortc, which gets no
//   renegotiation from this page: see restartIce), and on a text-only link, the channel goes in
//   the first offer. The other side creates its own end when an offer with an application m-line
//   arrives: created earlier, it would fire `negotiationneeded` and make that side offer on its
//   own, which the offer rule above forbids. Data sent after the link connected but before the channel opened waits for
//   it (`sendData`). It carries small JSON objects tagged by `type` (safety codes in verify.js,
//   chat, mute), peer to peer, never through the server.
// - A text-only link (a stranger call where either side asked for a text chat, docs/protocol.md
//   "Text only") is made with `audio: false`: no microphone track and no audio transceiver on
//   either side, so its descriptions carry the application m-line alone. Should the other side
//   offer audio anyway, our answer turns it down (inactive): a text chat never carries sound.
// - The RTP header extension urn:ietf:params:rtp-hdrext:ssrc-audio-level carries each packet's
//   loudness in clear text, so a TURN relay could see who speaks when. It is stripped from every
//   description we send and every one we receive; with it absent from both offer and answer it is
//   never negotiated, and audio works the same without it.

/** The extension that leaks speech/silence in clear text. */
export const AUDIO_LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';

/** In relay mode, how long to wait for a relay candidate before reporting TURN failure. */
export const RELAY_GATHER_TIMEOUT_MS = 5000;

/**
 * How long a link may take to connect before the page says it could not, and why. A relayed
 * link over TURN/TLS on a slow network connects in a few seconds; Chromium itself gives up on
 * a pair after about 15 s; 25 s leaves room for one ICE restart and a busy machine, and is
 * still short enough that nobody stares at "Connecting…" wondering. Documented in README.
 */
export const LINK_CONNECT_TIMEOUT_MS = 25_000;

/**
 * Every link bundles its audio and its data channel on one transport from the start
 * ("max-bundle"): with the default ("balanced") the browser gathers candidates, runs ICE checks
 * and (relayed) allocates a TURN relay for each of the two m-lines until the answer bundles them,
 * which doubles the candidates sent through the server and the connectivity work on both ends.
 * Every peer XES talks to bundles (browsers and aiortc put every m-line in one BUNDLE group).
 */
export const BUNDLE_POLICY = 'max-bundle';

/** The link's data channel: negotiated, stream id 0 (docs/verification.md, "Data channel"). */
export const DATA_CHANNEL = Object.freeze({ label: 'xes', id: 0 });

/** Largest data channel message accepted or sent, in bytes of JSON. */
export const DATA_MAX_BYTES = 16 * 1024;
/** Messages kept for a channel not open yet (`sendData`); more are refused. */
export const MAX_UNSENT_DATA = 64;

/** Data channel message types: lower-case words, as in the signalling protocol. */
const DATA_TYPE = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * Parse one data channel message: a JSON object with a string `type`, at most DATA_MAX_BYTES.
 * @param {unknown} raw what the channel delivered
 * @returns {object|null} null for anything else (binary, oversized, not JSON, no type)
 */
export function parseData(raw) {
  if (typeof raw !== 'string' || raw.length > DATA_MAX_BYTES) return null;
  let message;
  try {
    message = JSON.parse(raw);
  } catch {
    return null;
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return null;
  return typeof message.type === 'string' && DATA_TYPE.test(message.type) ? message : null;
}

// --- network change: restart ICE soon after a link goes quiet (begin) ---
/**
 * How long a link may stay ICE "disconnected" before it restarts ICE. Chromium says
 * "disconnected" once nothing has arrived for ~2.5 s, and "failed" only after ~15 s more: waiting
 * for "failed" would leave a call silent that long after a phone moves from Wi-Fi to mobile data.
 * A short wait still lets a momentary hiccup (a busy CPU) heal by itself; a restart it makes
 * needlessly costs nothing audible, as audio keeps the old path until the new one is chosen.
 */
export const DISCONNECTED_RESTART_MS = 500;

/**
 * A new link whose ICE is still checking this long after its first answer gets one ICE restart
 * from the side that made the first offer. Chromium never turns a link "failed" while no
 * candidate pair has been tried to the end, so a link whose candidates went missing (or whose
 * checks a starved browser dropped) would otherwise say "Connecting…" until
 * LINK_CONNECT_TIMEOUT_MS and then only report it; fresh credentials and candidates usually
 * connect it at once. Counted from the answer, not from the offer: on a busy machine the answer
 * itself may take seconds, and renegotiating before it came would only add to the load.
 */
export const STUCK_RESTART_MS = 10_000;

/**
 * How many more STUCK_RESTART_MS the stuck watch waits, one at a time, for a link that made
 * progress since its last look (linkProgress), before it restarts or renews it all the same.
 */
export const STUCK_PATIENCE = 2;

/**
 * How far a link that is not connected yet has got, as one number that only grows while it gets
 * somewhere: the answers to our connectivity checks, plus the bytes (DTLS handshake, then media)
 * received on its transport. Checks the peer sends us are not counted: a link whose own checks
 * go nowhere receives those too.
 * @param {RTCStatsReport} stats
 * @returns {number}
 */
export function linkProgress(stats) {
  let progress = 0;
  stats.forEach((report) => {
    if (report.type === 'candidate-pair') progress += report.responsesReceived ?? 0;
    else if (report.type === 'transport') progress += report.bytesReceived ?? 0;
  });
  return progress;
}

/**
 * An offer of ours still unanswered after this long is sent again (up to OFFER_RESENDS times,
 * each later repeat after twice as long: at 8, 24 and 40 s).
 * A signal can be lost between two people: a server node lost mid-set-up, Redis restarted, a
 * socket cut while the message was in flight. A lost answer leaves both ends stuck for good
 * (ICE may even connect from the other side's checks, but DTLS cannot start without the answer's
 * fingerprint). The other side sends again the answer it made, or answers a repeat it never saw
 * like any renegotiation. 8 s: an answer takes well under a second on a sound machine, but
 * seconds on a starved one, where each repeat adds to the messages queued on both sides. An offer
 * still unanswered after its last repeat makes the link anew (`renew`), in case the other side
 * lost its end of it.
 */
export const OFFER_RESEND_MS = 8_000;

/**
 * How many of the page's recent offer-to-answer round trips (SignalPace) the waits above stretch
 * to, when that is longer than they are, and how many round trips are remembered.
 */
export const ROUND_TRIPS_PER_WAIT = 2;
export const PACE_SAMPLES = 8;

/**
 * How long signals take to reach a peer and come back, as this page sees them: from each offer
 * of ours to its answer. On a sound machine that is tens of ms. On a starved one (eight people on
 * one core shared with a busy loop) the pages read their sockets late, and it was measured at
 * 15 s, then 80 s and more. A wait that judges an offer lost (OFFER_RESEND_MS) or a link stuck (STUCK_RESTART_MS)
 * while the answer is merely slow throws the link away: the new link's offer then goes through
 * the same slow pages, adds to the work that made them slow, and the late answer to the old one
 * answers nothing. Seen once: every link of the eighth person made anew twice, none connected.
 * So those waits stretch to ROUND_TRIPS_PER_WAIT of the slowest of the page's last PACE_SAMPLES
 * round trips (one per link of a full room and one more). One pace is shared by all the page's
 * links: a page slow to read one peer's answer is slow to read them all.
 */
export class SignalPace {
  constructor() {
    /** @type {number[]} the latest round trips, ms, oldest first */
    this.recent = [];
  }

  /** @param {number} ms one offer's round trip */
  observe(ms) {
    this.recent.push(ms);
    if (this.recent.length > PACE_SAMPLES) this.recent.shift();
  }

  /**
   * @param {number} floorMs the wait on a page that reads its signals in time
   * @returns {number} floorMs, or ROUND_TRIPS_PER_WAIT of the slowest recent round trip if longer
   */
  wait(floorMs) {
    return Math.max(floorMs, ROUND_TRIPS_PER_WAIT * Math.max(0, ...this.recent));
  }
}

/**
 * Whether the link's own transport says its DTLS handshake is done, from its stats: the link is
 * up, however far behind the page is in reading the events that say so.
 * @param {RTCStatsReport} stats
 * @returns {boolean}
 */
export function transportConnected(stats) {
  let connected = false;
  stats.forEach((report) => {
    if (report.type === 'transport' && report.dtlsState === 'connected') connected = true;
  });
  return connected;
}

/** A bitrate cap the sender refused (a negotiation under way) is tried again after this long. */
export const BITRATE_RETRY_MS = 1_000;

/**
 * A link is `settled` SETTLE_GRACE_MS after the peer's voice arrives (its track unmutes: the
 * first audio packets), for a text-only link once its data channel opens, or at the latest
 * SETTLE_FALLBACK_MS after it connected (a peer who sends no audio). Until then the page leaves
 * the link alone: the bitrate cap, the safety check's certificate read and the path's stats each
 * wait for WebRTC's signalling thread, which is busy bringing the link up, so asking earlier
 * delays the first word heard (bench/join_profile.py located it). The grace: the first packets
 * arrive while that thread still finishes DTLS and the data channel, and the bench measured the
 * work started right then as a later "connected" and a later first word. None of it is needed in
 * a call's first second.
 */
export const SETTLE_FALLBACK_MS = 1_000;
export const SETTLE_GRACE_MS = 500;
export const OFFER_RESENDS = 3;
// --- network change (end) ---

/**
 * The DTLS certificate fingerprint an SDP announces (the session-level or first `a=fingerprint`).
 * @param {string} sdp
 * @returns {string|null}
 */
export function dtlsFingerprint(sdp) {
  const match = /^a=fingerprint:(.+?)\s*$/im.exec(sdp ?? '');
  return match ? match[1].toLowerCase() : null;
}

/**
 * The ICE username fragment an SDP announces (session-level or first `a=ice-ufrag`). Every offer
 * has its own: a new RTCPeerConnection or an ICE restart makes a new one, a repeated offer keeps
 * it; so it names the offer an answer answers (`answers`, docs/protocol.md "A repeated offer").
 * @param {string|undefined} sdp
 * @returns {string|null}
 */
export function iceUfrag(sdp) {
  const match = /^a=ice-ufrag:(\S+)/m.exec(sdp ?? '');
  return match ? match[1] : null;
}

/**
 * The media sections of a description, in order (their `a=mid` values).
 * @param {string|undefined} sdp
 * @returns {string[]}
 */
export function mediaSections(sdp) {
  return [...(sdp ?? '').matchAll(/^a=mid:(\S+)/gm)].map((match) => match[1]);
}

/** Plain-words reasons a link could not connect (`linkfailure` detail.reason). */
export const LINK_FAILURE = Object.freeze({
  relayUnreachable: 'the relay could not be reached',
  relayRefused: 'the relay refused our credentials',
  noPath: 'no network path between you (firewalls may block it)',
});

/**
 * Why a link did not connect, from what ICE told us about the relay.
 * @param {object} facts
 * @param {boolean} facts.relayOnly iceTransportPolicy "relay" ("Hide my IP")
 * @param {boolean} facts.gotRelayCandidate a relay candidate was gathered
 * @param {Set<number>} facts.turnErrorCodes icecandidateerror codes for turn:/turns: URLs
 * @param {boolean} facts.hasTurn the configuration names a TURN server
 * @returns {string} one of LINK_FAILURE's values
 */
export function linkFailureReason({ relayOnly, gotRelayCandidate, turnErrorCodes, hasTurn }) {
  if (gotRelayCandidate) return LINK_FAILURE.noPath;
  if (turnErrorCodes.has(401)) return LINK_FAILURE.relayRefused;
  // No relay candidate although one was needed (relay only) or errors say the relay is down:
  // the relay is what failed, not the path between the two peers.
  if (hasTurn && (relayOnly || turnErrorCodes.size > 0)) return LINK_FAILURE.relayUnreachable;
  return LINK_FAILURE.noPath;
}

/**
 * Remove the audio-level RTP header extension from an SDP.
 * @param {string} sdp
 * @returns {string}
 */
export function stripAudioLevel(sdp) {
  return sdp
    .split('\r\n')
    .filter((line) => !(line.startsWith('a=extmap:') && line.includes(AUDIO_LEVEL_URI)))
    .join('\r\n');
}

/**
 * Opus settings asked of the other side, in the fmtp line of every description: in-band forward
 * error correction (a lost packet's speech is rebuilt from the next one) and discontinuous
 * transmission (near silence costs a packet every 400 ms instead of 50 a second). The bitrate
 * itself is set per sender (`setAudioBitrate`), so it can follow the size of the room without
 * renegotiating.
 */
export const OPUS_PARAMETERS = Object.freeze({ useinbandfec: '1', usedtx: '1' });

/**
 * Set OPUS_PARAMETERS on every Opus fmtp line of an SDP, keeping its other parameters.
 * @param {string} sdp
 * @returns {string}
 */
export function tuneOpus(sdp) {
  const lines = sdp.split('\r\n');
  const opus = new Set(lines.flatMap((line) => {
    const match = /^a=rtpmap:(\d+) opus\/48000/i.exec(line);
    return match ? [match[1]] : [];
  }));
  return lines.map((line) => {
    const match = /^a=fmtp:(\d+) (.*)$/.exec(line);
    if (!match || !opus.has(match[1])) return line;
    const parameters = new Map(match[2].split(';').map((part) => part.trim()).filter(Boolean).map((part) => {
      const equals = part.indexOf('=');
      return equals < 0 ? [part, null] : [part.slice(0, equals), part.slice(equals + 1)];
    }));
    for (const [name, value] of Object.entries(OPUS_PARAMETERS)) parameters.set(name, value);
    const text = [...parameters].map(([name, value]) => (value === null ? name : `${name}=${value}`)).join(';');
    return `a=fmtp:${match[1]} ${text}`;
  }).join('\r\n');
}

/**
 * A session description with the audio-level extension stripped and Opus tuned, as a plain object.
 * @param {RTCSessionDescriptionInit} description
 * @returns {RTCSessionDescriptionInit}
 */
export function cleanDescription(description) {
  return { type: description.type, sdp: tuneOpus(stripAudioLevel(description.sdp ?? '')) };
}

/**
 * The negotiation with one remote peer. Events (all CustomEvent):
 * - `signal` (detail: data to send to the peer, `{description}` or `{candidate}`),
 * - `track` (detail: the remote MediaStream, once it has an audio track),
 * - `statechange` (detail: pc.connectionState),
 * - `turnerror` (detail: {reason, url?, errorCode?}) when the TURN relay cannot be used,
 * - `linkfailure` (detail: {reason}, one of LINK_FAILURE's values) when the link has not
 *   connected within LINK_CONNECT_TIMEOUT_MS, or failed again after its ICE restart; a later
 *   `statechange` to "connected" supersedes it,
 * - `channelopen` (no detail) when the link's data channel opened,
 * - `settled` (no detail) once, when the peer's voice arrives (SETTLE_FALLBACK_MS explains),
 * - `answered` (no detail) each time the peer's answer to our offer has been applied,
 * - `data` (detail: a message object from the peer's data channel, checked by parseData),
 * - `error` (detail: an Error that broke negotiation; the link may be dead).
 */
export class Negotiation extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.peerId the remote peer's id
   * @param {boolean} options.polite our role toward it, from the server
   * @param {boolean} options.initiator true when we make the first offer (we are the newcomer)
   * @param {RTCConfiguration} options.configuration ICE servers and transport policy
   * @param {MediaStream|null} options.localStream our microphone (null: receive only)
   * @param {boolean} [options.audio] false for a text-only link: the data channel alone
   * @param {number|null} [options.connectDeadline] when (performance.now() ms) the page says the
   *   link could not connect; a link made anew before its first one ever connected keeps that
   *   one's, so that a link that cannot connect is reported in LINK_CONNECT_TIMEOUT_MS however
   *   often it is made anew; null: LINK_CONNECT_TIMEOUT_MS from now
   * @param {SignalPace} [options.pace] the page's signal round trips, shared by all its links
   */
  constructor({
    peerId, polite, initiator, configuration, localStream, audio = true, connectDeadline = null,
    pace = new SignalPace(),
  }) {
    super();
    this.peerId = peerId;
    this.polite = polite;
    this.initiator = initiator;
    this.audio = audio;
    this.localStream = audio ? localStream : null;
    this.relayOnly = configuration.iceTransportPolicy === 'relay';
    this.pc = new RTCPeerConnection({ ...configuration, bundlePolicy: BUNDLE_POLICY });
    /** @type {MediaStream} what the peer sends us; filled by `track` events */
    this.remoteStream = new MediaStream();
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.srdAnswerPending = false;
    this.tracksAdded = false;
    this.closed = false;
    this.gotRelayCandidate = false;
    this.relayTimer = null;
    this.hasTurn = (configuration.iceServers ?? []).some((server) =>
      [server.urls].flat().some((url) => /^turns?:/i.test(String(url))));
    /** @type {Set<number>} */
    this.turnErrorCodes = new Set();
    this.restarted = false;
    this.failureReported = false;
    this.connectDeadline = connectDeadline ?? performance.now() + LINK_CONNECT_TIMEOUT_MS;
    /** Whether this link was ever connected (a link made anew after that starts afresh). */
    this.everConnected = false;
    this.connectTimer = setTimeout(() => this.reportFailure(),
      Math.max(0, this.connectDeadline - performance.now()));
    /** Armed by the first answer (STUCK_RESTART_MS), only on the side that made the offer. */
    this.stuckTimer = null;
    this.stuckRestarted = false;
    /** linkProgress at the stuck watch's last look, and how many looks it let pass for it. */
    this.stuckProgress = 0;
    /** The peer's ICE candidates received so far (part of the stuck watch's progress). */
    this.candidatesReceived = 0;
    this.stuckPatience = 0;
    this.offerTimer = null;
    this.offerResends = 0;
    this.pace = pace;
    /** When (performance.now()) the offer we have out was last sent, for its round trip. */
    this.offerSentAt = 0;
    /** The SDP of the last offer we answered, to know a repeat of it (applySignal). */
    this.answeredOfferSdp = null;
    this.queue = Promise.resolve();
    /** @type {number|null} Opus bitrate for our voice on this link (bits per second) */
    this.audioBitrate = null;
    /** @type {number|null} the bitrate last set on the sender */
    this.appliedBitrate = null;
    this.bitrateChain = Promise.resolve();
    this.bitrateTimer = null;
    /** @type {RTCDataChannel|null} */
    this.channel = null;
    this.channelOpen = false;
    /** @type {string[]} data sent before the channel opened (`sendData`), oldest first */
    this.unsentData = [];
    /** Whether the link is up and its audio flowing (SETTLE_FALLBACK_MS): `settled` was sent. */
    this.settled = false;
    this.settleTimer = null;

    this.pc.addEventListener('negotiationneeded', () => {
      // The initiator's first offer is made at once (end of the constructor): no second one.
      if (!this.makingOffer && this.pc.signalingState === 'stable') this.onNegotiationNeeded();
    });
    this.pc.addEventListener('icecandidate', ({ candidate }) => this.onIceCandidate(candidate));
    this.pc.addEventListener('icecandidateerror', (event) => this.onIceCandidateError(event));
    this.pc.addEventListener('icegatheringstatechange', () => this.onGatheringStateChange());
    this.pc.addEventListener('track', ({ track, streams }) => this.onTrack(track, streams));
    // --- network change (begin) ---
    this.disconnectedTimer = null;
    this.pc.addEventListener('iceconnectionstatechange', () => {
      clearTimeout(this.disconnectedTimer);
      if (this.pc.iceConnectionState !== 'disconnected') return;
      this.disconnectedTimer = setTimeout(() => this.restartIce(), DISCONNECTED_RESTART_MS);
    });
    // --- network change (end) ---
    this.pc.addEventListener('connectionstatechange', () => {
      const state = this.pc.connectionState;
      if (state === 'connected') {
        this.everConnected = true;
        if (!this.settled && this.settleTimer === null) {
          this.settleTimer = setTimeout(() => this.settle(), SETTLE_FALLBACK_MS);
        }
        this.applyAudioBitrate();
        clearTimeout(this.connectTimer);
        clearTimeout(this.stuckTimer);
        this.failureReported = false;
        this.restarted = false;
      }
      this.emit('statechange', state);
      if (state === 'failed') {
        // A first failure gets an ICE restart (made by the initiator, awaited by the other side)
        // and the full bound again before it is reported; a failure after that restart is
        // reported at once (a later restart that succeeds still turns the link "connected").
        if (!this.restarted) {
          this.restarted = true;
          clearTimeout(this.connectTimer);
          this.connectTimer = setTimeout(() => this.reportFailure(), LINK_CONNECT_TIMEOUT_MS);
        } else {
          this.reportFailure();
        }
      }
      this.maybeRestartIce();
    });

    if (initiator) {
      if (!audio || polite) this.openDataChannel(); // else once settled (theory of operation)
      this.addLocalTracks();
      // The first offer leaves now rather than when the queued `negotiationneeded` task gets its
      // turn behind the page's rendering of `joined` (bench/browser_bench.py's timeline: tens of
      // ms). The event that follows finds the offer made and does nothing.
      this.onNegotiationNeeded();
    }
  }

  /**
   * Send one message to the peer over the link's data channel.
   * @param {object} message a JSON-serialisable object with a `type`
   * @returns {boolean} false when the message is too large, or the channel is neither open nor
   *   on its way (the link not connected)
   */
  sendData(message) {
    const text = JSON.stringify(message);
    if (text.length > DATA_MAX_BYTES) return false;
    if (!this.channelOpen || this.channel === null) {
      // Connected, with the channel still on its way (made once the voice flows): sent when it
      // opens, so a chat typed in the call's first second is not refused.
      const waits = this.audio && !this.closed && this.pc.connectionState === 'connected';
      if (!waits || this.unsentData.length >= MAX_UNSENT_DATA) return false;
      this.unsentData.push(text);
      return true;
    }
    try {
      this.channel.send(text);
    } catch {
      return false; // closing under us: the link is going away
    }
    return true;
  }

  openDataChannel() {
    if (this.channel !== null) return;
    const channel = this.pc.createDataChannel(DATA_CHANNEL.label, { negotiated: true, id: DATA_CHANNEL.id });
    this.channel = channel;
    channel.addEventListener('open', () => {
      if (this.closed) return;
      this.channelOpen = true;
      try {
        for (const text of this.unsentData.splice(0)) channel.send(text);
      } catch {
        // closing under us: the link is going away
      }
      this.emit('channelopen', null);
      if (!this.audio) this.settle(); // a text chat has no voice to wait for
    });
    channel.addEventListener('close', () => {
      this.channelOpen = false;
    });
    channel.addEventListener('message', ({ data }) => {
      if (this.closed) return;
      const message = parseData(data);
      if (message !== null) this.emit('data', message);
    });
  }

  /** @returns {string} the RTCPeerConnection's connectionState */
  get connectionState() {
    return this.pc.connectionState;
  }

  /**
   * Handle a `signal` payload from the peer. Processed in order, one at a time.
   * @param {object} data `{description}` or `{candidate}`
   * @returns {Promise<void>} settles when this payload has been handled
   */
  /**
   * Whether `data` is an offer that starts a new link rather than renegotiating this one: it
   * comes with another DTLS certificate than the one this link was made with. A DTLS session
   * cannot change certificates, so such an offer can only come from a new RTCPeerConnection: the
   * peer re-created its link (docs/protocol.md, "A new link from a peer already linked": what
   * a peer that cannot restart ICE, aiortc, does after a network change).
   * @param {object} data a relayed signal's data
   * @returns {boolean}
   */
  startsNewLink(data) {
    if (data === null || typeof data !== 'object' || data.description?.type !== 'offer') return false;
    const current = this.pc.remoteDescription;
    if (!current) return false;
    const offered = dtlsFingerprint(data.description.sdp);
    return offered !== null && offered !== dtlsFingerprint(current.sdp);
  }

  handleSignal(data) {
    this.queue = this.queue.then(() => this.applySignal(data)).catch((error) => {
      if (!this.closed) this.emit('error', error);
    });
    return this.queue;
  }

  /**
   * Use new ICE servers (fresh TURN credentials); takes effect for the next gathering.
   * @param {RTCConfiguration} configuration
   */
  setConfiguration(configuration) {
    if (this.closed) return;
    try {
      // The same bundle policy: changing it on a live connection is refused.
      this.pc.setConfiguration({ ...configuration, bundlePolicy: BUNDLE_POLICY });
    } catch (error) {
      this.emit('error', error);
    }
  }

  /**
   * The most our voice may use on this link; applied now if the link is settled, else once it is.
   * @param {number} bitsPerSecond
   */
  setAudioBitrate(bitsPerSecond) {
    this.audioBitrate = bitsPerSecond;
    this.applyAudioBitrate();
  }

  /**
   * Cap our sender at `audioBitrate`, once per value. Chromium answers getParameters by waiting
   * for WebRTC's signalling thread, so the page's main thread stalls (tens of ms were measured)
   * if it asks while that thread is busy making the first offer or bringing DTLS up; hence not
   * before the link is settled (SETTLE_FALLBACK_MS), and not again on every "connected" once
   * applied. A renegotiation calls it again: the cap holds for the new encoding too.
   */
  applyAudioBitrate() {
    // One at a time: two setParameters in flight on one sender refuse each other (each
    // getParameters' transaction), and the refused value would then never be applied.
    this.bitrateChain = this.bitrateChain.then(() => this.applyAudioBitrateNow()).catch(() => {});
    return this.bitrateChain;
  }

  async applyAudioBitrateNow() {
    const bitrate = this.audioBitrate;
    if (this.closed || !this.settled || bitrate === null || bitrate === this.appliedBitrate) return;
    if (!this.pc.localDescription || !this.pc.remoteDescription) return;
    this.appliedBitrate = bitrate;
    for (const sender of this.pc.getSenders()) {
      if (!sender.track || sender.track.kind !== 'audio') continue;
      const parameters = sender.getParameters();
      const encodings = parameters.encodings ?? [];
      if (encodings.length === 0) {
        this.appliedBitrate = null; // not negotiated after all: the next trigger tries again
        continue;
      }
      if (encodings.every((encoding) => encoding.maxBitrate === bitrate)) continue;
      for (const encoding of encodings) encoding.maxBitrate = bitrate;
      try {
        await sender.setParameters(parameters);
      } catch {
        // Refused while a negotiation is under way: try again shortly.
        if (this.appliedBitrate === bitrate) this.appliedBitrate = null;
        clearTimeout(this.bitrateTimer);
        if (!this.closed) this.bitrateTimer = setTimeout(() => this.applyAudioBitrate(), BITRATE_RETRY_MS);
      }
    }
  }

  /**
   * Send another microphone track instead of the current one: same sender, no renegotiation.
   * @param {MediaStreamTrack} track
   * @returns {Promise<void>}
   */
  async replaceAudioTrack(track) {
    if (this.closed) return;
    const senders = this.pc.getSenders().filter((sender) => sender.track && sender.track.kind === 'audio');
    await Promise.all(senders.map((sender) => sender.replaceTrack(track)));
  }

  /** Close the connection; no more events afterwards. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.relayTimer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.stuckTimer);
    clearTimeout(this.offerTimer);
    clearTimeout(this.bitrateTimer);
    clearTimeout(this.disconnectedTimer);
    clearTimeout(this.settleTimer);
    this.pc.close();
  }

  /** The link is up and the peer's voice arrives: the page's own work on it may start. */
  settle() {
    clearTimeout(this.settleTimer);
    if (this.settled || this.closed) return;
    this.settled = true;
    // The initiator's data channel, left out of the first offer: its `negotiationneeded` makes
    // the second offer, which the other side answers with its end (theory of operation).
    if (this.initiator) this.openDataChannel();
    this.applyAudioBitrate();
    this.emit('settled', null);
  }

  addLocalTracks() {
    if (this.tracksAdded) return;
    this.tracksAdded = true;
    if (!this.audio) {
      // A text chat: refuse whatever audio the offer may have had, send none.
      for (const transceiver of this.pc.getTransceivers()) transceiver.direction = 'inactive';
      return;
    }
    const tracks = this.localStream ? this.localStream.getAudioTracks() : [];
    if (tracks.length === 0) {
      // Listening without a microphone still needs an audio m-line to receive.
      if (this.initiator) this.pc.addTransceiver('audio', { direction: 'recvonly' });
      return;
    }
    for (const track of tracks) this.pc.addTrack(track, this.localStream);
  }

  async onNegotiationNeeded() {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.sendDescription();
    } catch (error) {
      if (!this.closed) this.emit('error', error);
    } finally {
      this.makingOffer = false;
    }
  }

  /**
   * A link that failed (ICE consent lost: a network change, a starved CPU) gets new ICE
   * credentials and candidates instead of staying dead.
   */
  maybeRestartIce() {
    if (this.pc.connectionState === 'failed') this.restartIce();
  }

  /**
   * Restart ICE: new credentials, and candidates gathered on the networks we have now (a phone
   * that moved to mobile data has a new address). When a link goes quiet, the side that made the
   * first offer restarts, so the two ends never both do; when our own network changed, we
   * restart whichever side we are (the restart offer goes through perfect negotiation, so one
   * that crosses the peer's own offer is resolved as glare). Never toward a peer that cannot
   * roll back (we are then the polite newcomer, docs/protocol.md `polite`): such a peer (aiortc)
   * cannot take a restart offer either, and would lose a working link to it. When its own
   * network changes, such a peer makes the link anew itself (docs/protocol.md, "A new link from a
   * peer already linked"). Toward a peer that joined after us we cannot tell (we are polite
   * toward every newcomer), so our own network change still restarts toward it.
   * @param {object} [options]
   * @param {boolean} [options.networkChanged] our own network changed (the browser went
   *   offline and online again): restart even though ICE has not noticed anything yet
   * @param {boolean} [options.stuck] a new link still checking (restartIfStuck): the first
   *   offerer restarts though ICE has not failed
   */
  restartIce({ networkChanged = false, stuck = false } = {}) {
    if (this.closed || (this.initiator && this.polite)) return;
    if (stuck && !this.initiator) return;
    if (!networkChanged && !stuck) {
      const state = this.pc.iceConnectionState;
      if (!this.initiator || (state !== 'disconnected' && state !== 'failed')) return;
    }
    this.pc.restartIce();
  }

  /**
   * STUCK_RESTART_MS after the link's first answer, if it is still not connected: one ICE restart
   * if its ICE is still checking. If ICE is through but DTLS never finished (seen with eight people
   * on two starved cores: one end "connected", the other "connecting" for good), or ICE is still
   * checking STUCK_RESTART_MS after that restart, the first offerer asks for the link to be made
   * anew (`renew`): a new RTCPeerConnection, whose new certificate makes the other side replace
   * its end too (startsNewLink). Nothing else would ever end the wait: Chromium turns a link
   * "failed" only once every candidate pair it knows has failed, and a handshake never. A link
   * that made progress since the last look waits up to STUCK_PATIENCE more periods first.
   */
  async restartIfStuck() {
    this.stuckTimer = null;
    if (this.closed || this.pc.connectionState === 'connected') return;
    if (this.pc.signalingState !== 'stable') {
      // A renegotiation (our restart) is still waiting for its answer: judge the link after.
      this.watchAgain();
      return;
    }
    // A link that is getting somewhere (checks answered, handshake packets arriving) is slow,
    // not stuck: a starved machine takes longer than STUCK_RESTART_MS, and a restart would
    // throw that progress away and start over. Patience has a bound, in case a link makes
    // "progress" that never ends in a connection.
    // The peer's candidates still arriving count too: they say its machine is busy bringing
    // the link up, and ICE cannot have tried candidates it has not received.
    let progress = this.candidatesReceived;
    let up = false;
    try {
      const stats = await this.pc.getStats();
      progress += linkProgress(stats);
      up = transportConnected(stats);
    } catch {
      // closed meanwhile: judged as no progress (and returned from just below)
    }
    if (this.closed || this.pc.connectionState === 'connected' || this.stuckTimer !== null) return;
    if (up) {
      // Connected already: the page has not read the event that says so yet (a starved page
      // reads it seconds late). Looked at again, in case the link is lost before it does.
      this.watchAgain();
      return;
    }
    const progressed = progress > this.stuckProgress;
    this.stuckProgress = progress;
    if (progressed && this.stuckPatience < STUCK_PATIENCE) {
      this.stuckPatience += 1;
      this.watchAgain();
      return;
    }
    this.stuckPatience = 0;
    const state = this.pc.iceConnectionState;
    const checking = state === 'new' || state === 'checking';
    const seen = `connection ${this.pc.connectionState}, ICE ${state}, progress ${progress}`;
    if (checking && !this.stuckRestarted) {
      this.stuckRestarted = true;
      this.warn(`ICE restarted, still checking (${seen})`);
      this.restartIce({ stuck: true });
    } else if ((!checking || this.stuckRestarted) && state !== 'disconnected' && state !== 'failed'
        && this.initiator && !this.polite) {
      // (A link that went "disconnected" or "failed" has its own restart, maybeRestartIce.)
      this.warn(`made anew, not connected (${seen})`);
      this.emit('renew', null);
      return;
    }
    // Looked at again every STUCK_RESTART_MS (longer on a slow page: SignalPace) until
    // connected: a restart that got ICE through may still leave DTLS unfinished.
    this.watchAgain();
  }

  /** Look at the link again (restartIfStuck) STUCK_RESTART_MS from now, longer on a slow page. */
  watchAgain() {
    this.stuckTimer = setTimeout(() => this.restartIfStuck(), this.pace.wait(STUCK_RESTART_MS));
  }

  /**
   * Say in the console what the link did to recover, and why: what a developer asks first about
   * a link that took long (the peer's id is the room's, nothing more).
   * @param {string} what
   */
  warn(what) {
    console.warn(`XES link to ${this.peerId}: ${what}`);
  }

  /** Say (once per attempt) that the link could not connect, and why. */
  reportFailure() {
    if (this.closed || this.failureReported || this.pc.connectionState === 'connected') return;
    this.failureReported = true;
    this.emit('linkfailure', {
      reason: linkFailureReason({
        relayOnly: this.relayOnly,
        gotRelayCandidate: this.gotRelayCandidate,
        turnErrorCodes: this.turnErrorCodes,
        hasTurn: this.hasTurn,
      }),
    });
  }

  /** @param {object} data */
  async applySignal(data) {
    if (this.closed || data === null || typeof data !== 'object') return;
    if (data.description) {
      const description = cleanDescription(data.description);
      // The answer to an offer we sent twice (OFFER_RESEND_MS) may come twice: the first one
      // made us stable, so a later one answers nothing.
      if (description.type === 'answer' && this.pc.signalingState === 'stable') return;
      // Nor may a late answer to an earlier offer of ours (one we repeated, then replaced by an
      // ICE restart or a new link) be taken for the answer to the offer we have out now: its
      // ICE credentials are not the ones the peer uses, so the link would never connect. A peer
      // that says which offer it answers (`answers`) is checked; one that does not, trusted.
      if (description.type === 'answer' && typeof data.answers === 'string'
          && data.answers !== iceUfrag(this.pc.localDescription?.sdp)) return;
      // A renegotiation keeps the ICE credentials (the data channel's second offer adds a media
      // section): a late answer to the first offer, repeated because that offer was (OFFER_RESEND_MS),
      // names the same ufrag as the second one. An answer has exactly the media sections of the
      // offer it answers, so one with others answers an earlier offer. Applying it would fail
      // ("the order of m-lines in answer doesn't match") and leave the link unanswered.
      // (A description that names no sections is not judged.)
      const sections = mediaSections(description.sdp);
      if (description.type === 'answer' && sections.length > 0
          && sections.join(' ') !== mediaSections(this.pc.localDescription?.sdp).join(' ')) return;
      // Likewise a repeat of the peer's first offer that arrives after its second one was
      // answered: it has fewer media sections than the offer we already took, and a later offer
      // may never drop one.
      if (description.type === 'offer' && sections.length > 0 && this.pc.remoteDescription
          && sections.length < mediaSections(this.pc.remoteDescription.sdp).length) return;
      const readyForOffer =
        !this.makingOffer &&
        (this.pc.signalingState === 'stable' ||
          (this.pc.signalingState === 'have-local-offer' && this.srdAnswerPending));
      this.ignoreOffer = description.type === 'offer' && !this.polite && !readyForOffer;
      if (this.ignoreOffer) return;
      if (description.type === 'offer' && this.pc.signalingState === 'stable'
          && description.sdp === this.answeredOfferSdp && this.pc.localDescription?.type === 'answer') {
        // The peer repeated an offer we answered (OFFER_RESEND_MS): our answer may have been
        // lost, or is merely slow on a busy machine. The answer we made still answers it, so it
        // is sent again as it is: a renegotiation would cost both ends work for nothing.
        this.sendDescription();
        return;
      }
      this.srdAnswerPending = description.type === 'answer';
      // A polite peer with its own offer out rolls it back implicitly here.
      await this.pc.setRemoteDescription(description);
      this.srdAnswerPending = false;
      if (description.type === 'answer') {
        clearTimeout(this.offerTimer);
        // From the offer's last sending: an answer to an earlier one came later still, so this
        // round trip is never longer than the real one.
        this.pace.observe(performance.now() - this.offerSentAt);
        this.offerResends = 0;
        this.emit('answered', null);
        if (this.stuckTimer === null && this.initiator && this.pc.connectionState !== 'connected') {
          // Candidates that arrive from now on count as progress: on a starved machine the
          // peer's come seconds after its answer, and ICE could not have got anywhere before.
          this.stuckProgress = this.candidatesReceived;
          this.watchAgain();
        }
      }
      if (description.type === 'offer') {
        // An offer from the peer: now add the microphone (once), reusing the offer's transceiver,
        // and our end of the negotiated data channel once an offer has its m-line.
        if (/^m=application /m.test(description.sdp)) this.openDataChannel();
        this.addLocalTracks();
        await this.pc.setLocalDescription();
        this.answeredOfferSdp = description.sdp;
        this.sendDescription();
      }
      // Offer and answer done (our answer already sent): a settled link's renegotiated sender
      // has its encoding to cap again.
      this.applyAudioBitrate();
    } else if ('candidate' in data) {
      this.candidatesReceived += 1;
      try {
        // null means the end of the peer's candidates.
        await this.pc.addIceCandidate(data.candidate ?? undefined);
      } catch (error) {
        // Candidates of an offer we ignored cannot be added, nor can those the peer gathered for
        // an earlier link or ICE generation that were still on their way when we made this one
        // (no remote description yet, or another ufrag than its): both expected, nothing else is.
        if (!this.ignoreOffer && !this.isStaleCandidate(data.candidate)) throw error;
      }
    }
  }

  /**
   * Whether a candidate that could not be added belongs to another ICE generation than the
   * peer's current one (see applySignal).
   * @param {RTCIceCandidateInit|null|undefined} candidate
   * @returns {boolean}
   */
  isStaleCandidate(candidate) {
    const remote = iceUfrag(this.pc.remoteDescription?.sdp);
    if (remote === null) return true;
    const ufrag = candidate?.usernameFragment ?? /\bufrag (\S+)/.exec(candidate?.candidate ?? '')?.[1];
    return typeof ufrag === 'string' && ufrag !== remote;
  }

  sendDescription() {
    if (this.closed || !this.pc.localDescription) return;
    const description = cleanDescription(this.pc.localDescription);
    // An answer names the offer it answers (docs/protocol.md, "A repeated offer").
    const answers = description.type === 'answer' ? iceUfrag(this.pc.remoteDescription?.sdp) : null;
    this.emit('signal', answers === null ? { description } : { description, answers });
    clearTimeout(this.offerTimer);
    if (this.pc.localDescription.type === 'offer') {
      this.answeredOfferSdp = null; // a later offer from the peer answers ours or is new
      // Later repeats wait twice as long: an answer that slow is more likely queued behind a
      // starved page (the peer's or our own) than lost, and each repeat adds to that queue.
      const wait = this.pace.wait(OFFER_RESEND_MS) * (this.offerResends === 0 ? 1 : 2);
      this.offerSentAt = performance.now();
      this.offerTimer = setTimeout(() => this.resendOffer(), wait);
    } else {
      this.offerResends = 0;
    }
  }

  /** Our offer is still unanswered after OFFER_RESEND_MS: send it again, a few times. */
  resendOffer() {
    if (this.closed || this.pc.signalingState !== 'have-local-offer') return;
    // A peer that cannot roll back (aiortc: we are then the polite first offerer) answers only
    // after gathering all its candidates, which may take seconds; a second offer would cross it.
    if (this.initiator && this.polite) return;
    if (this.offerResends >= OFFER_RESENDS) {
      // Never answered: the other side may have lost its end. Made anew (twice at most, Mesh).
      if (this.initiator) {
        this.warn(`made anew, offer unanswered after ${OFFER_RESENDS} repeats`);
        this.emit('renew', null);
      }
      return;
    }
    this.offerResends += 1;
    this.sendDescription();
  }

  /** @param {RTCIceCandidate|null} candidate */
  onIceCandidate(candidate) {
    if (this.closed) return;
    if (candidate === null) {
      this.emit('signal', { candidate: null });
      return;
    }
    if (candidate.type === 'relay') this.gotRelayCandidate = true;
    // Exactly the fields docs/protocol.md names, which the Python peer parses.
    this.emit('signal', {
      candidate: {
        candidate: candidate.candidate,
        sdpMid: candidate.sdpMid,
        sdpMLineIndex: candidate.sdpMLineIndex,
      },
    });
  }

  /** @param {RTCPeerConnectionIceErrorEvent} event */
  onIceCandidateError(event) {
    if (this.closed) return;
    const url = event.url ?? '';
    if (/^turns?:/i.test(url) && typeof event.errorCode === 'number') {
      this.turnErrorCodes.add(event.errorCode);
    }
    // 401: the TURN server refused our credentials; 701: it could not be reached at all.
    if (/^turns?:/i.test(url) && (event.errorCode === 401 || event.errorCode === 701)) {
      this.emit('turnerror', {
        reason: event.errorCode === 401 ? 'credentials refused' : 'server unreachable',
        url,
        errorCode: event.errorCode,
      });
    }
  }

  onGatheringStateChange() {
    if (this.closed || !this.relayOnly) return;
    // In relay mode no relay candidate means no connection, and Chromium never says "failed"
    // when TURN refuses it: the state just stays "new". Give it a deadline of our own.
    if (this.pc.iceGatheringState === 'gathering' && this.relayTimer === null) {
      this.relayTimer = setTimeout(() => {
        if (!this.closed && !this.gotRelayCandidate && this.pc.connectionState !== 'connected') {
          this.emit('turnerror', { reason: 'no relay candidate was gathered' });
        }
      }, RELAY_GATHER_TIMEOUT_MS);
    } else if (this.pc.iceGatheringState === 'complete' && !this.gotRelayCandidate) {
      clearTimeout(this.relayTimer);
      this.emit('turnerror', { reason: 'no relay candidate was gathered' });
    }
  }

  /**
   * @param {MediaStreamTrack} track
   * @param {readonly MediaStream[]} streams
   */
  onTrack(track, streams) {
    if (this.closed || !this.audio || track.kind !== 'audio') return;
    // Use the sender's stream when it names one (browsers do); aiortc may not, so keep our own.
    if (streams.length > 0 && streams[0] !== this.remoteStream) {
      this.remoteStream = streams[0];
    } else if (!this.remoteStream.getTracks().includes(track)) {
      this.remoteStream.addTrack(track);
    }
    if (!this.settled) {
      // A remote track is muted until its first packets arrive.
      const voiceArrived = () => {
        if (this.settled || this.closed) return;
        clearTimeout(this.settleTimer);
        this.settleTimer = setTimeout(() => this.settle(), SETTLE_GRACE_MS);
      };
      if (track.muted) track.addEventListener('unmute', voiceArrived, { once: true });
      else voiceArrived();
    }
    this.emit('track', this.remoteStream);
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
