// The full mesh: one Negotiation per other member of the room, created and closed as the roster
// changes. Rooms hold at most 8 people, so a mesh has at most 7 links per browser.

import { LINK_CONNECT_TIMEOUT_MS, LINK_FAILURE, Negotiation, SignalPace } from './negotiation.js';

/** How many times a link whose handshake never finished is made anew, per peer. */
const MAX_RENEWALS = 2;

/** Network change events come in bursts (offline, online, connection change): one restart. */
const NETWORK_CHANGE_SETTLE_MS = 100;

/**
 * How long one link keeps the join's first signals pending at most (`firstSignalsPending`). The
 * view redraws at most every 100 ms while they are (main.js), so a peer slow to answer (aiortc
 * answers only once it has gathered every candidate) or a candidate that never comes (a relay
 * that refuses us) must not keep it at that pace: past this, the link is on its own time.
 */
export const FIRST_SIGNALS_WAIT_MAX_MS = 1000;

/**
 * Map<peerId, Negotiation> driven by roster events. Re-dispatches every Negotiation event as a
 * CustomEvent whose detail is `{peerId, detail}`: `signal`, `track`, `statechange`, `turnerror`,
 * `linkfailure`, `channelopen`, `settled`, `data`, `error`; plus `removed` (detail `{peerId}`) when a link
 * is closed, and `firstsignalsout` once the join's first signals have been exchanged: for each
 * link we made as newcomer, our offer and first candidate out and the member's answer applied;
 * for each newcomer's link, our answer to its offer with our first candidate after it
 * (`firstSignalsPending`).
 */
export class Mesh extends EventTarget {
  /**
   * @param {object} options
   * @param {() => RTCConfiguration} options.configuration current ICE configuration, read for
   *   each new link (so fresh TURN credentials apply to later links)
   * @param {MediaStream|null} options.localStream our microphone
   * @param {boolean} [options.textOnly] we asked for a text chat: every link without audio
   */
  constructor({ configuration, localStream, textOnly = false }) {
    super();
    this.configuration = configuration;
    this.localStream = localStream;
    this.textOnly = textOnly;
    /** @type {Map<string, Negotiation>} */
    this.links = new Map();
    /**
     * Members who joined after us, whose link waits for their offer (`expect`).
     * @type {Map<string, {peer: object, connectDeadline: number|null, timer: ReturnType<typeof setTimeout>|0}>}
     */
    this.expected = new Map();
    /** @type {Map<string, number>} links made anew per peer (Negotiation `renew`) */
    this.renewals = new Map();
    this.networkChangeTimer = null;
    /** @type {number|null} Opus bitrate per link, from the Call */
    this.audioBitrate = null;
    /**
     * Peers whose link's first signals, on the path of a join, are not through yet: for a link we
     * made as initiator, our offer and first candidate out and the answer applied; for a member
     * who joined after us, our answer to its offer and our first candidate (pending from
     * `expect`, before its offer has even arrived).
     * @type {Map<string, ReturnType<typeof setTimeout>>} each with its FIRST_SIGNALS_WAIT_MAX_MS timer
     */
    this.awaitingFirstSignal = new Map();
    /** How fast this page's signals go and come back, for every link's waits (SignalPace). */
    this.pace = new SignalPace();
  }

  /**
   * Open a link to a member of the room.
   * @param {{id: string, polite: boolean, text_only?: boolean}} peer as in `joined.peers` or
   *   `peer-joined.peer`; a text-only stranger's link, like all of ours when we are text-only,
   *   carries no audio (docs/protocol.md, "Text only")
   * @param {boolean} initiator true for peers listed in our `joined` (we are the newcomer)
   * @returns {Negotiation}
   */
  add(peer, initiator, connectDeadline = null) {
    // A link made anew before the one it replaces ever connected keeps that one's deadline for
    // saying it could not connect (Negotiation `connectDeadline`).
    const replaced = this.links.get(peer.id);
    if (connectDeadline === null && replaced && !replaced.everConnected) connectDeadline = replaced.connectDeadline;
    const onJoinPath = initiator || this.expected.has(peer.id);
    // A new link on the join's path takes the old one's place at once, its first signal still
    // awaited: `firstsignalsout` is not said in between.
    if (!onJoinPath) this.firstSignalSent(peer.id);
    this.closeLink(peer.id);
    const link = new Negotiation({
      peerId: peer.id,
      polite: peer.polite,
      initiator,
      configuration: this.configuration(),
      localStream: this.localStream,
      audio: !(this.textOnly || peer.text_only === true),
      connectDeadline,
      pace: this.pace,
    });
    for (const type of ['signal', 'track', 'statechange', 'turnerror', 'linkfailure', 'channelopen', 'settled', 'data', 'error']) {
      link.addEventListener(type, (event) => {
        if (this.links.get(peer.id) !== link) return;
        this.dispatchEvent(new CustomEvent(type, { detail: { peerId: peer.id, detail: event.detail } }));
      });
    }
    link.addEventListener('renew', () => {
      // A link whose DTLS never finished is made anew, twice at most per peer (a machine too
      // slow to finish any handshake must not loop).
      const renewals = this.renewals.get(peer.id) ?? 0;
      if (this.links.get(peer.id) !== link || renewals >= MAX_RENEWALS) return;
      this.renewals.set(peer.id, renewals + 1);
      this.add(peer, true);
    });
    if (this.audioBitrate !== null) link.setAudioBitrate(this.audioBitrate);
    this.links.set(peer.id, link);
    if (onJoinPath) {
      this.awaitFirstSignal(peer.id);
      // As newcomer, the offer and our first candidate are what the other end waits for, and
      // then its answer comes back within one round trip: a redraw let in after the offer left
      // held our candidates and the answer behind it (bench/browser_bench.py: first candidate
      // 15 ms after the offer, 5 ms on the bare page; the answer read up to 30 ms after the
      // member sent it, 1-2 ms on the bare page). As a member answering a newcomer, the answer
      // and then our first candidate: ICE cannot start checking before one side has the
      // other's candidates, and a redraw let in between the answer and the candidate held the
      // candidate (first candidate 16 ms after the answer, 7 ms on the bare page, and ICE
      // connected that much later). The view's wait is bounded (main.js), so a candidate or an
      // answer that is slow to come (a TURN allocation, a busy member) costs at most that bound.
      let described = false;
      let candidate = false;
      let answered = !initiator;
      const step = ({ type, detail }) => {
        if (type === 'answered') answered = true;
        else if (detail?.description) described = true;
        else if (detail?.candidate) candidate = true;
        if (!(described && candidate && answered)) return;
        link.removeEventListener('signal', step);
        link.removeEventListener('answered', step);
        this.firstSignalSent(peer.id);
      };
      link.addEventListener('signal', step);
      link.addEventListener('answered', step);
    }
    return link;
  }

  /** @returns {boolean} whether some link's first signals on a join's path are still pending (`awaitingFirstSignal`) */
  firstSignalsPending() {
    return this.awaitingFirstSignal.size > 0;
  }

  /** @param {string} peerId a link on a join's path: its first signals are awaited from now */
  awaitFirstSignal(peerId) {
    clearTimeout(this.awaitingFirstSignal.get(peerId));
    this.awaitingFirstSignal.set(peerId, setTimeout(() => this.firstSignalSent(peerId), FIRST_SIGNALS_WAIT_MAX_MS));
  }

  /** @param {string} peerId its link's first signals are through, or it is gone, or too slow */
  firstSignalSent(peerId) {
    clearTimeout(this.awaitingFirstSignal.get(peerId));
    if (this.awaitingFirstSignal.delete(peerId) && this.awaitingFirstSignal.size === 0) {
      this.dispatchEvent(new CustomEvent('firstsignalsout'));
    }
  }

  /**
   * A member who joined after us: its link is made when its first signal (the offer it makes to
   * everyone already in the room) arrives, not now. Making an RTCPeerConnection takes this page's
   * main thread and WebRTC's threads right when the newcomer's offer is on its way, and the offer
   * then waited for them (bench/browser_bench.py: it reached a page busy making its link about
   * 15 ms later than one that was idle). An offer that never comes is reported like any link that
   * cannot connect, LINK_CONNECT_TIMEOUT_MS after the member joined; one that comes later still
   * makes the link, which then has the usual time of its own to connect.
   * @param {{id: string, polite: boolean, text_only?: boolean}} peer as in `peer-joined.peer`
   */
  expect(peer) {
    this.remove(peer.id);
    const expected = { peer, connectDeadline: performance.now() + LINK_CONNECT_TIMEOUT_MS, timer: 0 };
    expected.timer = setTimeout(() => {
      expected.connectDeadline = null;
      this.firstSignalSent(peer.id);
      // No offer, so nothing was gathered to say more: the path between the two is what failed.
      this.dispatchEvent(new CustomEvent('linkfailure', {
        detail: { peerId: peer.id, detail: { reason: LINK_FAILURE.noPath } },
      }));
    }, LINK_CONNECT_TIMEOUT_MS);
    this.expected.set(peer.id, expected);
    // Its offer follows its `peer-joined` within milliseconds: the page's redraw for the newcomer
    // waits until our answer has left (main.js), so that the offer does not wait for the redraw.
    this.awaitFirstSignal(peer.id);
  }

  /** @param {string} peerId @returns {Negotiation} the link to an expected member, made now */
  addExpected(peerId) {
    const { peer, connectDeadline } = this.expected.get(peerId);
    return this.add(peer, false, connectDeadline);
  }

  /** @param {string} peerId @returns {boolean} whether we have, or expect, a link to this member */
  has(peerId) {
    return this.links.has(peerId) || this.expected.has(peerId);
  }

  /** @returns {string[]} every member we have or expect a link to */
  members() {
    return [...this.links.keys(), ...this.expected.keys()];
  }

  /**
   * Close the link to a peer that left (no-op when there is none).
   * @param {string} peerId
   */
  remove(peerId) {
    this.firstSignalSent(peerId);
    this.closeLink(peerId);
  }

  /**
   * Close the link to a peer, or stop expecting one (`removed` when there was a link); whether a
   * first signal is still awaited is the caller's to say.
   * @param {string} peerId
   */
  closeLink(peerId) {
    const expected = this.expected.get(peerId);
    if (expected !== undefined) {
      clearTimeout(expected.timer);
      this.expected.delete(peerId);
    }
    const link = this.links.get(peerId);
    if (link === undefined) return;
    this.links.delete(peerId);
    link.close();
    this.dispatchEvent(new CustomEvent('removed', { detail: { peerId } }));
  }

  /**
   * Route a relayed `signal` to its link. Signals from unknown peers are dropped: the server only
   * relays within the room, so they can only be stragglers from a peer that already left.
   * @param {string} peerId the `from` of the signal
   * @param {object} data
   */
  handleSignal(peerId, data) {
    const link = this.expected.has(peerId) ? this.addExpected(peerId) : this.links.get(peerId);
    if (link === undefined) return;
    if (link.startsNewLink(data)) {
      // The peer made its link anew (a new RTCPeerConnection after its network changed): ours
      // closes too (`removed`), and a fresh one, the answering side, takes the offer.
      this.add({ id: peerId, polite: link.polite, text_only: !link.audio }, false).handleSignal(data);
      return;
    }
    link.handleSignal(data);
  }

  /**
   * Apply new ICE servers to every open link.
   * @param {RTCConfiguration} configuration
   */
  setConfiguration(configuration) {
    for (const link of this.links.values()) link.setConfiguration(configuration);
  }

  /**
   * Our network changed (a new address: Wi-Fi to mobile data): every link restarts ICE at once,
   * gathering candidates on the network we have now, instead of waiting seconds for ICE to
   * notice that the old path went silent. Several change events in a row make one restart.
   */
  networkChanged() {
    clearTimeout(this.networkChangeTimer);
    this.networkChangeTimer = setTimeout(() => {
      for (const link of this.links.values()) link.restartIce({ networkChanged: true });
    }, NETWORK_CHANGE_SETTLE_MS);
  }

  /**
   * The most each link may spend on our voice (Opus), for every link now and later.
   * @param {number} bitsPerSecond
   */
  setAudioBitrate(bitsPerSecond) {
    this.audioBitrate = bitsPerSecond;
    for (const link of this.links.values()) link.setAudioBitrate(bitsPerSecond);
  }

  /**
   * Send another microphone track on every link, without renegotiating.
   * @param {MediaStreamTrack} track
   * @returns {Promise<void>}
   */
  async replaceAudioTrack(track) {
    await Promise.all([...this.links.values()].map((link) => link.replaceAudioTrack(track)));
  }

  /** Close every link. */
  closeAll() {
    clearTimeout(this.networkChangeTimer);
    for (const peerId of this.members()) this.remove(peerId);
  }

  /** @returns {Map<string, RTCPeerConnection>} */
  peerConnections() {
    return new Map([...this.links].map(([id, link]) => [id, link.pc]));
  }

  /** @returns {Map<string, MediaStream>} remote streams that carry audio */
  remoteStreams() {
    const streams = new Map();
    for (const [id, link] of this.links) {
      if (link.remoteStream.getAudioTracks().length > 0) streams.set(id, link.remoteStream);
    }
    return streams;
  }
}
