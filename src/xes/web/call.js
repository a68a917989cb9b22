// The call's state and transitions, without the DOM: what the page is doing (idle, joining, in
// the lobby, queued for a stranger, in a call), who is in it, the mesh of links, mute and
// push-to-talk, host controls, and the alerts that explain what went wrong. main.js (the view)
// calls the methods below for clicks and keys, and re-renders on `change`.
//
// Everything here reaches the outside world only through what it is given (a Signalling, a way
// to open the microphone) and the browser's RTCPeerConnection via mesh.js, so it runs under
// Node's test runner with fakes for both.

import * as protocol from './protocol.js';
import { SignallingState } from './signalling.js';
import { Mesh } from './mesh.js';
import { LINK_FAILURE } from './negotiation.js';
import { MicrophoneError, openMicrophone, setMuted, stopStream } from './media.js';
import { LinkStats } from './stats.js';
import { HearingReporter } from './hearing.js';
import { judge, opusBitrate, playedLevel, sample } from './quality.js';
import { RoomVerification } from './verify.js';
import * as safety from './safety.js';

/**
 * What the page is doing. Rooms: idle → joining → (lobby →) joined. Strangers: idle → joining →
 * queued → joined → (Next) queued …
 */
export const Phase = Object.freeze({
  IDLE: 'idle',
  JOINING: 'joining',
  LOBBY: 'lobby',
  QUEUED: 'queued',
  JOINED: 'joined',
});

// Ask for fresh TURN credentials when this share of their lifetime has passed.
const ICE_REFRESH_AT = 0.8;
// Join refusals that leave us outside the room (and free the microphone).
const JOIN_REFUSALS = new Set([
  'room-full', 'room-locked', 'password-required', 'wrong-password', 'banned', 'declined',
]);

export const NO_RELAY_FOR_STRANGERS = 'This server has no relay, so you can only talk to strangers ' +
  'who also allow a direct connection, and they will see your IP address. Tick “Allow a direct ' +
  'connection with strangers” if you accept that.';
/** Longest chat message, in characters (its JSON stays well under the data channel's limit). */
export const CHAT_MAX_CHARS = 4000;
/** Messages kept on the page (older ones scroll away; nothing is stored anywhere). */
export const CHAT_KEEP = 200;
/** Quality samples kept per link: enough for quality.js's 5 s loss window at one poll a second. */
const QUALITY_SAMPLES = 8;

export const INVALID_ROOM_LINK = 'This room link is not valid. Ask for the link again, or start a new room.';
// While the signalling socket is down and the session may resume: news, not an emergency.
export const RESTORING = 'The connection to the server is being restored…';
export const RESTORING_IN_CALL = 'The connection to the server is being restored. Your call goes on meanwhile.';

/**
 * The call. Events (all CustomEvent):
 * - `change` (no detail): state changed, render again;
 * - `microphone` (detail: MediaStream|null): the microphone was opened, or closed;
 * - `track` (detail: {peerId, stream}): a remote stream to play;
 * - `linkremoved` (detail: {peerId}): a link closed, stop playing it;
 * - `teardown` (no detail): every link and the roster are gone (left, removed, rejoined);
 * - `passwordrequired`: the room wants a password (the view shows and focuses its field);
 * - `directconsentrequired`: this server has no relay and the user did not allow a direct
 *   connection with strangers, so nothing was queued;
 * - `entered` (detail: {match}): we are in a call now (the view moves focus there);
 * - `linksettled` (detail: {peerId}): a link is up and its voice arrives (negotiation.js,
 *   SETTLE_FALLBACK_MS): the view's own work that could wait starts then;
 * - `announce` (detail: a sentence): something a screen-reader user should hear politely:
 *   joins and leaves by name, mutes, host changes, chat messages, a link turning poor.
 */
export class Call extends EventTarget {
  /**
   * @param {object} options
   * @param {import('./signalling.js').Signalling} options.signalling
   * @param {string|null} [options.roomId] the room of a `/r/<id>` page
   * @param {() => Promise<MediaStream>} [options.openMicrophone]
   * @param {() => number} [options.now] wall clock in ms (ICE credential expiry is wall-clock)
   * @param {{relayOnly?: boolean, allowDirect?: boolean}} [options.preferences] the user's
   *   "Hide my IP" and "Allow a direct connection with strangers"; the view keeps them current
   * @param {{get: (room: string) => (string|null|undefined), set: (room: string, key: string) => void}}
   *   [options.hostKeys] where this tab keeps, per room, the secret that proves it is the host
   *   after a server restart (docs/protocol.md, "Restarts"); the view gives sessionStorage
   * @param {string} [options.connectionType] `navigator.connection.type` at start, if known
   */
  constructor({
    signalling, roomId = null, openMicrophone: open = openMicrophone,
    now = () => Date.now(), preferences = {}, hostKeys = new Map(), connectionType = undefined,
  }) {
    super();
    this.hostKeys = hostKeys;
    this.signalling = signalling;
    this.openMicrophone = open;
    this.now = now;
    this.preferences = { relayOnly: false, allowDirect: false, ...preferences };
    this.phase = Phase.IDLE;
    this.roomId = roomId;
    this.isMatch = false;
    // What may still be said about the current or last stranger (safety.js).
    this.feedback = null;
    /** @type {{id: string|null, name: string}|null} */
    this.me = null;
    this.hostId = null;
    this.rules = null;
    /** @type {Map<string, object>} id -> {id, name, polite, connectionState, link, ...} */
    this.peers = new Map();
    this.iceServers = [];
    this.iceExpiresAt = null;
    this.serverPolicy = 'all';
    // `hello.relay`: whether this server hands out a TURN relay; null until hello (or an older
    // server that does not say). Without one "Hide my IP" cannot work, and strangers meet only
    // if both allow a direct connection.
    this.serverRelay = null;
    // The largest max_peers a host may set: the server's maximum, from `hello.limits.max_peers`.
    this.maxCeiling = null;
    /** @type {MediaStream|null} */
    this.localStream = null;
    this.muted = false;
    // What holds the microphone open while muted (push-to-talk): 'space' and/or 'button'.
    this.talkHeld = new Set();
    /** @type {Mesh|null} */
    this.mesh = null;
    /** @type {RoomVerification|null} the safety codes, while in a call */
    this.verification = null;
    this.refreshTimer = null;
    /** @type {Map<string, string>} id -> name of who knocks, while we are host */
    this.knocks = new Map();
    // The room asked for a password: the view shows its field until we are in.
    this.passwordNeeded = false;
    // What the first message said, so a reconnect can say it again under the new peer id.
    this.password = undefined;
    this.matchRequest = null;
    // Whether we asked strangers for a text chat ("Text only"): no microphone is ever opened.
    this.textOnly = false;
    // While a first join or match waits for the socket, a reconnect must not also send one.
    this.awaitingSocket = false;
    /** @type {{from: string|null, name: string, text: string, at: number, self: boolean}[]} chat
     * messages of this call, oldest first; kept in memory only, gone when the call ends */
    this.messages = [];
    // Whether the others were last told our microphone is silenced (null: not told yet).
    this.toldSilenced = null;
    /** @type {Map<string, string>} key -> sentence; one per concern so a repeat replaces */
    this.alerts = new Map();
    // Counts alert changes, so the view redraws them (and screen readers hear them) only then.
    this.alertsVersion = 0;
    // What the polite live region says about the signalling connection ('' when it is fine).
    this.connectionNotice = '';
    // `navigator.connection.type` last seen (networkChanged).
    this.connectionType = connectionType;
    // Members whose own socket is away: we tell the server while we still receive their audio.
    this.hearing = new HearingReporter({
      peerConnections: () => (this.mesh ? this.mesh.peerConnections() : new Map()),
      report: (peerId) => this.signalling.send(protocol.hearing(peerId)),
    });
    this.linkStats = new LinkStats(() => (this.mesh ? this.mesh.peerConnections() : new Map()));
    this.linkStats.addEventListener('update', ({ detail }) => this.onLinkStats(detail));
    signalling.addEventListener('message', ({ detail }) => this.onServerMessage(detail));
    signalling.addEventListener('statechange', ({ detail }) => this.onSignallingState(detail));
  }

  // --- what the view reads -----------------------------------------------------------------------

  get inCall() {
    return this.phase === Phase.JOINED;
  }

  /**
   * Whether a join's first signals are still on their way: when we join, our offer and first
   * candidate to each member and its answer back; when someone joins us, our answer to the
   * newcomer's offer and our first candidate (`firstsignalsout` once none is left, or once a link
   * has kept them pending for Mesh's FIRST_SIGNALS_WAIT_MAX_MS; Mesh `firstSignalsPending`).
   */
  get joinSignalsPending() {
    return this.mesh !== null && this.mesh.firstSignalsPending();
  }

  /** Whether we host the room we are in (never in a stranger call). */
  get isHost() {
    return this.inCall && !this.isMatch && this.me !== null && this.hostId === this.me.id;
  }

  /**
   * Whether this call is a text chat: a stranger call where we, or the stranger, asked for text
   * only. Nobody's audio goes over it (docs/protocol.md, "Text only").
   */
  get textChat() {
    return this.inCall && this.isMatch && (this.textOnly || [...this.peers.values()].some((peer) => peer.textOnly));
  }

  /** Whether the microphone is silenced: muted, and push-to-talk not held. */
  get silenced() {
    return this.muted && this.talkHeld.size === 0;
  }

  /** Whether the server answers now: host controls sent while it does not would be lost. */
  get serverReachable() {
    return this.signalling.state === SignallingState.OPEN;
  }

  /** "Hide my IP (always relay)", unless the server said it has no relay to hide behind. */
  get relayOnly() {
    return this.preferences.relayOnly && this.serverRelay !== false;
  }

  /**
   * The RTCConfiguration for new links: the server's ICE servers, relay if the user asked for it
   * ("Hide my IP") or the server says so. For a stranger it does unless both allowed a direct
   * connection, which the server knows from `match`; so one side's consent never overrides the
   * other's refusal.
   * @returns {RTCConfiguration}
   */
  configuration() {
    const relay = this.relayOnly || this.serverPolicy === 'relay';
    return { iceServers: this.iceServers, iceTransportPolicy: relay ? 'relay' : 'all' };
  }

  // --- alerts --------------------------------------------------------------------------------------

  showAlert(key, text) {
    this.alerts.set(key, text);
    this.alertsVersion += 1;
    this.changed();
  }

  clearAlert(key) {
    if (!this.alerts.delete(key)) return;
    this.alertsVersion += 1;
    this.changed();
  }

  // --- starting and ending -------------------------------------------------------------------------

  /** Open the socket now, not on Join: `hello` says whether this server has a relay. */
  connect() {
    this.signalling.connect();
  }

  /**
   * Join the room of this page.
   * @param {string} name a display name already checked with protocol.checkName
   * @param {string} [password]
   */
  async join(name, password) {
    if (this.phase !== Phase.IDLE) return;
    this.clearAlert('room-refused'); // a retry gets a fresh answer, announced again if it is the same
    this.clearAlert('removed');
    if (!protocol.ID_PATTERN.test(this.roomId ?? '')) {
      this.showAlert('room', INVALID_ROOM_LINK);
      return;
    }
    this.password = password;
    await this.start(name, () => this.sendJoin());
  }

  /**
   * Ask for a stranger.
   * @param {string} name a display name already checked
   * @param {{tags: string[], language: string, textOnly?: boolean, acceptText?: boolean}} request
   *   `textOnly`: a text chat, and the microphone is never asked for; `acceptText`: a voice user
   *   who may be paired with a text-only one (docs/protocol.md, "Text only")
   */
  async findStranger(name, { tags, language, textOnly = false, acceptText = false }) {
    if (this.phase !== Phase.IDLE) return;
    this.clearAlert('signalling-match');
    this.matchRequest = { tags, language, textOnly, acceptText: !textOnly && acceptText };
    this.textOnly = textOnly;
    await this.start(name, () => this.sendMatch(), { microphone: !textOnly });
  }

  /**
   * Joining a room and asking for a stranger start alike: the microphone first (a refusal stops
   * here, with its explanation shown), then the signalling socket, then the first message.
   * @param {string} name
   * @param {() => void} sendFirstMessage sends `join` or `match`
   * @param {{microphone?: boolean}} [options] `microphone: false` for a text chat: not asked for
   */
  async start(name, sendFirstMessage, { microphone = true } = {}) {
    this.me = { id: null, name };
    this.phase = Phase.JOINING;
    this.changed();
    if (microphone && !(await this.ensureMicrophone())) {
      this.phase = Phase.IDLE;
      this.changed();
      return;
    }
    this.awaitingSocket = true;
    this.signalling.connect();
    await this.signalling.whenOpen();
    this.awaitingSocket = false;
    sendFirstMessage();
  }

  async ensureMicrophone() {
    if (this.localStream) return true;
    try {
      this.localStream = await this.openMicrophone();
    } catch (error) {
      this.showAlert('microphone', error instanceof MicrophoneError ? error.message : String(error));
      return false;
    }
    this.clearAlert('microphone');
    this.applyMicrophone();
    this.emit('microphone', this.localStream);
    return true;
  }

  sendJoin() {
    this.signalling.send(protocol.join({
      room: this.roomId, name: this.me.name, password: this.password,
      hostKey: this.hostKeys.get(this.roomId) ?? null,
    }));
  }

  sendMatch() {
    const direct = this.preferences.allowDirect;
    if (this.serverRelay === false && !direct) {
      // Learnt from `hello` only now, with the socket: say so instead of queueing (the server
      // would refuse anyway), and free the microphone.
      this.end();
      this.emit('directconsentrequired');
      return;
    }
    this.signalling.send(protocol.match({
      name: this.me.name, ...this.matchRequest, direct,
    }));
  }

  /** Leave the room, or stop talking to strangers. */
  leave() {
    this.signalling.send(this.isMatch ? protocol.stop() : protocol.leave());
    this.end();
  }

  /** Leave the lobby before the host answers. */
  cancelLobby() {
    if (this.phase !== Phase.LOBBY) return;
    this.signalling.send(protocol.leave());
    this.end();
  }

  /** Someone new: from a stranger call back to the queue (the microphone stays open). */
  next() {
    if (this.phase !== Phase.JOINED) return;
    this.signalling.send(protocol.next());
    this.tearDown({ keepMicrophone: true });
    this.phase = Phase.QUEUED;
    this.changed();
  }

  /** Stop meeting strangers: out of the queue or the call. */
  stop() {
    this.signalling.send(protocol.stop());
    this.end();
  }

  /** The page goes away: tell the room at once instead of leaving it to the heartbeat. */
  pageHidden() {
    if (this.inCall) this.signalling.send(this.isMatch ? protocol.stop() : protocol.leave());
  }

  /**
   * Our network changed: the browser came back `online`, or its connection type changed (Wi-Fi
   * to mobile data), so we likely have a new address. The signalling socket belongs to the old
   * one and is dead without knowing it: renew it now, which resumes our session (same peer id,
   * every link kept, nobody sees us leave). Every link restarts ICE at once to gather candidates
   * on the network we have now, rather than waiting seconds for ICE to notice the old path died.
   * @param {string|undefined} [connectionType] `navigator.connection.type` after a `change`;
   *   omitted for `online`. A `change` that keeps the type (only the speed estimates moved) is no
   *   network change and is ignored.
   */
  networkChanged(connectionType) {
    if (connectionType !== undefined) {
      if (connectionType === this.connectionType) return;
      this.connectionType = connectionType;
    }
    // Even between calls: the next click would otherwise go down the dead socket.
    this.signalling.renew();
    if (this.mesh) this.mesh.networkChanged();
  }

  /** Back to idle, microphone closed. */
  end() {
    this.tearDown();
    this.phase = Phase.IDLE;
    this.isMatch = false;
    this.textOnly = false;
    this.changed();
  }

  /** Close every link and forget the room; keeps the microphone when `keepMicrophone`. */
  tearDown({ keepMicrophone = false } = {}) {
    this.stopVerification();
    if (this.mesh) this.mesh.closeAll();
    this.mesh = null;
    this.linkStats.stop();
    this.hearing.stop();
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    this.peers.clear();
    this.knocks.clear();
    this.messages = [];
    this.hostId = null;
    this.rules = null;
    this.talkHeld.clear();
    this.applyMicrophone();
    this.emit('teardown');
    if (!keepMicrophone && this.localStream) {
      this.emit('microphone', null);
      stopStream(this.localStream);
      this.localStream = null;
    }
    this.clearAlert('turn');
    this.clearAlert('relay-unavailable');
  }

  // --- talking -------------------------------------------------------------------------------------

  /** The microphone sends while unmuted, or while muted and push-to-talk is held. */
  applyMicrophone() {
    setMuted(this.localStream, this.silenced);
    this.tellMuted();
  }

  /**
   * Tell everyone whether our microphone sends (over each link's data channel, never through the
   * server): without it the others cannot tell a muted person from a silent one.
   */
  tellMuted() {
    if (!this.mesh || this.toldSilenced === this.silenced) return;
    this.toldSilenced = this.silenced;
    // A text-only link sends no audio: there is no microphone on it to be muted or not.
    for (const link of this.mesh.links.values()) if (link.audio) link.sendData({ type: 'mute', muted: this.silenced });
  }

  toggleMute() {
    this.muted = !this.muted;
    this.applyMicrophone();
    this.announce(this.muted ? 'Microphone off.' : 'Microphone on.');
    this.changed();
  }

  /**
   * Push-to-talk: `holder` ('space' or 'button') starts or stops holding the microphone open.
   * @param {string} holder
   * @param {boolean} held
   */
  holdToTalk(holder, held) {
    const before = this.talkHeld.size > 0;
    if (held && this.inCall) this.talkHeld.add(holder);
    else this.talkHeld.delete(holder);
    if (before === this.talkHeld.size > 0) return;
    this.applyMicrophone();
    this.changed();
  }

  // --- chat ----------------------------------------------------------------------------------------

  /**
   * Send a chat message to everyone in the call: one copy over each link's data channel. The
   * server never sees it and nothing stores it.
   * @param {string} raw what the user typed
   * @returns {{ok: true} | {ok: false, reason: string}}
   */
  sendChat(raw) {
    const text = String(raw).trim();
    if (!this.inCall) return { ok: false, reason: 'You are not in a call.' };
    if (text.length === 0) return { ok: false, reason: 'Type a message first.' };
    if (text.length > CHAT_MAX_CHARS) {
      return { ok: false, reason: `A message can be at most ${CHAT_MAX_CHARS} characters.` };
    }
    const links = [...this.mesh.links.values()];
    const sent = links.filter((link) => link.sendData({ type: 'chat', text })).length;
    if (links.length > 0 && sent === 0) return { ok: false, reason: 'Not sent: nobody is connected yet.' };
    this.addMessage({ from: this.me.id, name: this.me.name, text, self: true });
    return { ok: true };
  }

  addMessage({ from, name, text, self }) {
    // The time is when this page sent or received it, by this page's clock: a sender's clock
    // could say anything.
    this.messages.push({ from, name, text, at: this.now(), self });
    if (this.messages.length > CHAT_KEEP) this.messages.splice(0, this.messages.length - CHAT_KEEP);
    // Not through the announcer: the chat history is itself a polite live region (role="log"),
    // so a screen reader reads the new entry once, and the text is not on the page twice.
    this.changed();
  }

  /** A message from a peer's data channel (its `type` checked by negotiation.js's parseData). */
  onPeerData(peerId, message) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    if (message.type === 'chat' && typeof message.text === 'string') {
      const text = message.text.trim();
      if (text.length === 0 || text.length > CHAT_MAX_CHARS) return;
      this.addMessage({ from: peerId, name: peer.name, text, self: false });
    } else if (message.type === 'mute' && typeof message.muted === 'boolean') {
      if (peer.muted === message.muted) return;
      const before = peer.muted;
      peer.muted = message.muted;
      // The first word from a link is its state, not news; a change is announced.
      if (before !== null) this.announce(`${peer.name} ${peer.muted ? 'muted' : 'unmuted'} their microphone.`);
      this.changed();
    }
  }

  // --- host controls -------------------------------------------------------------------------------

  /** Send `set-rules`; the new rules show when the server confirms them with `rules`. */
  setRules(rules) {
    if (this.isHost) this.signalling.send(protocol.setRules(rules));
  }

  /**
   * Remove or ban a member.
   * @param {'remove'|'ban'} kind
   * @param {string} peerId
   */
  moderate(kind, peerId) {
    if (!this.isHost) return;
    this.signalling.send(kind === 'ban' ? protocol.ban(peerId) : protocol.remove(peerId));
  }

  /** Let a knocker in, or turn it away (the server tells the host nothing back for a decline). */
  answerKnock(peerId, admit) {
    if (!this.isHost) return;
    this.signalling.send(admit ? protocol.admit(peerId) : protocol.decline(peerId));
    if (!admit && this.knocks.delete(peerId)) this.changed();
  }

  // --- server messages -----------------------------------------------------------------------------

  onServerMessage(message) {
    switch (message.type) {
      case 'hello':
        this.maxCeiling = message.limits?.max_peers ?? this.maxCeiling;
        this.serverRelay = typeof message.relay === 'boolean' ? message.relay : null;
        if (message.limits?.resume_grace_seconds) {
          this.hearing.setInterval(message.limits.resume_grace_seconds * 250); // a quarter of it
        }
        break;
      case 'joined':
        this.onJoined(message);
        break;
      case 'resumed':
        this.onResumed(message);
        break;
      case 'peer-away':
        // Nothing to show: the member is still in the call. We only vouch for its audio.
        if (this.peers.has(message.peer)) this.hearing.away(message.peer);
        break;
      case 'peer-back':
        this.hearing.back(message.peer);
        break;
      case 'peer-joined':
        // A replay after a resume may repeat a join we handled: keep the link we have.
        if (this.peers.has(message.peer.id) && this.mesh && this.mesh.has(message.peer.id)) break;
        this.peers.set(message.peer.id, newPeer(message.peer));
        this.knocks.delete(message.peer.id);
        if (this.mesh) this.mesh.expect(message.peer); // its link comes with its offer
        this.announce(`${message.peer.name} joined.`);
        this.applyBitrate();
        break;
      case 'peer-left': {
        this.hearing.back(message.peer);
        const peer = this.peers.get(message.peer);
        this.peers.delete(message.peer);
        if (this.mesh) this.mesh.remove(message.peer);
        if (peer) this.announce(`${peer.name} left.`);
        this.applyBitrate();
        break;
      }
      case 'signal':
        if (this.mesh) this.mesh.handleSignal(message.from, message.data);
        break;
      case 'left':
        break; // we already tore down when we sent leave/next/stop
      case 'host':
        if (this.hostId !== message.peer && this.inCall && !this.isMatch) {
          const who = message.peer === this.me?.id ? 'You are'
            : `${this.peers.get(message.peer)?.name ?? 'Someone'} is`;
          this.announce(`${who} now the host.`);
        }
        this.hostId = message.peer;
        if (message.host_key) this.hostKeys.set(this.roomId, message.host_key);
        break;
      case 'rules':
        this.rules = message.rules;
        this.maxCeiling = Math.max(this.maxCeiling ?? 0, message.rules.max_peers);
        break;
      case 'lobby':
        this.phase = Phase.LOBBY;
        this.clearAlert('room-refused'); // e.g. "this room has a password", now given
        break;
      case 'knock':
        this.knocks.set(message.peer.id, message.peer.name);
        this.announce(`${message.peer.name} asks to join.`);
        break;
      case 'knock-withdrawn':
        this.knocks.delete(message.peer);
        break;
      case 'removed':
        this.end();
        this.showAlert('removed', protocol.describeRemoval(message.banned));
        break;
      case 'queued':
        this.phase = Phase.QUEUED;
        break;
      case 'unqueued':
        if (this.phase === Phase.QUEUED) this.phase = Phase.IDLE;
        break;
      case 'ice-servers':
        this.iceServers = message.ice_servers;
        this.iceExpiresAt = message.ice_expires_at ?? null;
        if (this.mesh) this.mesh.setConfiguration(this.configuration());
        this.scheduleIceRefresh();
        break;
      case 'error':
        this.onServerError(message);
        break;
      case 'identified':
        for (const [n, sentence] of safety.identifiedSentences(message, this.now() / 1000).entries()) {
          this.showAlert(`identified-${n}`, sentence);
        }
        break;
      case 'noted':
        if (this.feedback) this.feedback = safety.noted(this.feedback, message.ref);
        break;
      default:
        break;
    }
    if (this.isMatch && (message.type === 'joined' || message.type === 'peer-joined')) {
      const stranger = message.type === 'joined' ? message.peers[0] : message.peer;
      if (stranger && this.feedback?.stranger.id !== stranger.id) this.feedback = safety.newFeedback(stranger);
    }
    this.changed();
  }

  // --- after a call with a stranger (docs/moderation.md) ------------------------------------------

  /** "Good call" (true) or "Bad call" about the current or last stranger. */
  rateStranger(good) {
    this.sendFeedback(protocol.rate(this.feedback?.stranger.id, good), { rated: true });
  }

  /** Never meet that stranger again; in a call with them, the server moves us on as with Next. */
  blockStranger() {
    if (!this.feedback) return;
    const inCallWithThem = this.phase === Phase.JOINED && this.peers.has(this.feedback.stranger.id);
    this.sendFeedback(protocol.block(this.feedback.stranger.id), { blocked: true });
    if (inCallWithThem) {
      this.tearDown({ keepMicrophone: true });
      this.phase = Phase.QUEUED;
      this.changed();
    }
  }

  toggleReporting() {
    if (!this.feedback) return;
    this.feedback = { ...this.feedback, reporting: !this.feedback.reporting };
    this.changed();
  }

  /** @param {string} reason a key of REPORT_REASONS @param {string} text */
  reportStranger(reason, text) {
    this.sendFeedback(protocol.report(this.feedback?.stranger.id, reason, text),
      { reported: true, reporting: false });
  }

  sendFeedback(message, change) {
    if (!this.feedback || !this.signalling.send(message)) return;
    this.feedback = { ...this.feedback, ...change };
    this.changed();
  }

  onJoined(message) {
    // A rejoin after a lost connection, or a new match: links from before are to peer ids that
    // no longer exist on the server, so start clean (the microphone stays).
    this.tearDown({ keepMicrophone: true });
    this.phase = Phase.JOINED;
    this.roomId = message.room;
    this.isMatch = message.match === true;
    this.me = { id: message.you, name: this.me ? this.me.name : '' };
    this.hostId = message.host;
    if (message.host_key) this.hostKeys.set(message.room, message.host_key);
    this.rules = message.rules;
    // A server older than `hello.limits.max_peers`: a fresh room's size is its maximum.
    this.maxCeiling = Math.max(this.maxCeiling ?? 0, message.rules.max_peers);
    this.iceServers = message.ice_servers;
    this.iceExpiresAt = message.ice_expires_at ?? null;
    this.serverPolicy = message.ice_transport_policy;
    this.passwordNeeded = false;
    this.clearAlert('room-refused');
    this.clearAlert('removed');
    if (this.configuration().iceTransportPolicy === 'relay' && !protocol.hasTurn(this.iceServers)) {
      this.showAlert('relay-unavailable',
        'Relay mode is unavailable: this server has no relay (TURN) configured, so with ' +
        '“Hide my IP (always relay)” on, calls cannot connect. Turn it off to connect directly.');
    }
    this.mesh = new Mesh({
      configuration: () => this.configuration(),
      localStream: this.localStream,
      textOnly: this.isMatch && this.textOnly,
    });
    this.toldSilenced = null; // nobody on the new links has been told yet
    this.wireMesh(this.mesh);
    this.startVerification();
    for (const peer of message.peers) {
      this.peers.set(peer.id, newPeer(peer));
      this.mesh.add(peer, true); // we are the newcomer: we offer to everyone already here
    }
    this.applyBitrate();
    this.linkStats.start();
    this.scheduleIceRefresh();
    const others = message.peers.map((peer) => peer.name);
    // A match is said by the match status, itself a polite live region: not twice.
    if (!this.isMatch) this.announce(others.length === 0 ? 'You joined the call. Nobody else is here yet.'
        : `You joined the call with ${others.join(', ')}.`);
    this.emit('entered', { match: this.isMatch });
  }

  /** Opus bitrate for every link, from the number of people (quality.js explains the budget). */
  applyBitrate() {
    if (this.mesh) this.mesh.setAudioBitrate(opusBitrate(this.peers.size + 1));
  }

  onServerError(message) {
    const sentence = protocol.describeError(message);
    if (JOIN_REFUSALS.has(message.code) && (this.phase === Phase.JOINING || this.phase === Phase.LOBBY)) {
      this.end();
      this.showAlert('room-refused', sentence);
      if (message.code === 'password-required' || message.code === 'wrong-password') {
        this.passwordNeeded = true;
        this.changed(); // enables the field again: a disabled input cannot take focus
        this.emit('passwordrequired');
      }
      return;
    }
    if (message.code === 'turn-unavailable' && message.ref === 'match') {
      // No relay and no consent: the page normally stops this before sending (see sendMatch).
      this.end();
      this.showAlert('match-refused', NO_RELAY_FOR_STRANGERS);
      return;
    }
    if (['cooldown', 'identity-banned', 'identity-required'].includes(message.code)) {
      // A refused `next` leaves us in the server's match room while the page already moved on.
      if (message.ref === 'next') this.signalling.send(protocol.stop());
      this.end();
      this.showAlert('match-refused', sentence);
      return;
    }
    if (message.code === 'already-joined' || message.code === 'not-queued') {
      return; // a double click; the state we show is already right
    }
    if (message.code === 'room-full' && message.ref === 'admit') {
      // The joiner's sentence ("ask someone inside to make room") would confuse the host.
      this.showAlert('error-admit', 'The room is full, so nobody else can be let in. Raise “Maximum people” ' +
        'or wait for someone to leave.');
      return;
    }
    this.showAlert(`error-${message.code}`, sentence);
  }

  scheduleIceRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (!this.iceExpiresAt || this.iceServers.length === 0) return;
    const lifetimeMs = this.iceExpiresAt * 1000 - this.now();
    // Already "expired" by our clock means our clock is off, not that the credentials are: asking
    // again at once would loop, so ask once a minute.
    const delayMs = lifetimeMs <= 0 ? 60_000 : Math.max(5000, lifetimeMs * ICE_REFRESH_AT);
    this.refreshTimer = setTimeout(() => this.signalling.send(protocol.iceRefresh()), delayMs);
  }

  /**
   * `resumed`: our seat is back and every link untouched. The replay that follows brings what
   * changed meanwhile (members, host, rules, signals), handled like live traffic; from the
   * snapshot we take the fresh ICE credentials and who is away now.
   */
  onResumed(message) {
    this.iceServers = message.ice_servers;
    this.iceExpiresAt = message.ice_expires_at ?? null;
    if (this.mesh) this.mesh.setConfiguration(this.configuration());
    this.scheduleIceRefresh();
    const away = new Set(message.room ? message.room.away : []);
    for (const peerId of this.hearing.awayPeers()) if (!away.has(peerId)) this.hearing.back(peerId);
    for (const peerId of away) if (this.peers.has(peerId)) this.hearing.away(peerId);
  }

  onSignallingState({ state, previous, closeCode, resumed }) {
    if (state === SignallingState.LOST) {
      // The server keeps our session through a grace period, so the call is left alone.
      this.connectionNotice = this.inCall ? RESTORING_IN_CALL : RESTORING;
    } else if (state === SignallingState.OPEN) {
      this.connectionNotice = '';
      // A resumed session is the same seat. Only a fresh one means the server forgot us.
      if (!resumed && previous === SignallingState.LOST && this.me && !this.awaitingSocket) this.rejoin();
    } else if (state === SignallingState.IDLE && closeCode === protocol.CLOSE_CODES.REPLACED) {
      this.connectionNotice = '';
      this.showAlert('signalling', 'This call was taken over by another connection. Reload the page to come back.');
    }
    this.changed();
  }

  /** The server no longer had our session (grace over, or restarted without it): start afresh. */
  rejoin() {
    if (this.phase === Phase.JOINED || this.phase === Phase.JOINING || this.phase === Phase.LOBBY) {
      if (this.isMatch) {
        // The stranger was told we left when our grace ran out: that conversation is over.
        this.end();
        this.showAlert('signalling-match', 'The connection to the server was lost for too long, so ' +
          'the conversation ended. Press “Talk to someone” to meet someone new.');
      } else {
        this.phase = Phase.JOINING;
        this.sendJoin();
      }
    } else if (this.phase === Phase.QUEUED) {
      this.phase = Phase.IDLE;
    }
  }

  // --- links ---------------------------------------------------------------------------------------

  // --- safety codes (verify.js) -------------------------------------------------------------------

  startVerification() {
    this.verification = new RoomVerification({
      selfId: this.me.id,
      mesh: this.mesh,
      nameOf: (peerId) => this.peers.get(peerId)?.name ?? 'someone',
    });
    this.verification.addEventListener('change', () => this.changed());
    // A mismatch the client found itself is an alert, never only a log line.
    this.verification.addEventListener('alert', ({ detail }) => this.showAlert(`verify-${detail.key}`, detail.text));
  }

  stopVerification() {
    if (this.verification) this.verification.detach();
    this.verification = null;
    for (const key of [...this.alerts.keys()]) if (key.startsWith('verify-')) this.clearAlert(key);
  }

  wireMesh(mesh) {
    mesh.addEventListener('signal', ({ detail }) => {
      this.signalling.send(protocol.signal(detail.peerId, detail.detail));
    });
    mesh.addEventListener('firstsignalsout', () => this.emit('firstsignalsout', null));
    mesh.addEventListener('track', ({ detail }) => {
      this.emit('track', { peerId: detail.peerId, stream: detail.detail });
    });
    mesh.addEventListener('statechange', ({ detail }) => {
      const peer = this.peers.get(detail.peerId);
      if (peer) peer.connectionState = detail.detail;
      if (peer && detail.detail === 'connected' && peer.linkFailure) {
        peer.linkFailure = null; // a restart found a path after all
        this.clearAlert(`link-${detail.peerId}`);
      }
      if (peer && peer.turnError && detail.detail === 'failed') this.showTurnAlert(peer.turnError);
      this.changed();
    });
    mesh.addEventListener('settled', ({ detail }) => {
      this.linkStats.poll(); // says at once whether the new link is direct or relayed
      this.emit('linksettled', { peerId: detail.peerId });
    });
    mesh.addEventListener('turnerror', ({ detail }) => {
      const peer = this.peers.get(detail.peerId);
      if (!peer) return;
      peer.turnError = detail.detail.reason;
      // Without relay-only mode a direct path may still work, so a TURN error only matters if
      // the link then fails; with relay-only mode it means the link cannot connect at all.
      if (this.configuration().iceTransportPolicy === 'relay' || peer.connectionState === 'failed') {
        this.showTurnAlert(peer.turnError);
      }
    });
    mesh.addEventListener('linkfailure', ({ detail }) => {
      const peer = this.peers.get(detail.peerId);
      if (!peer) return;
      peer.linkFailure = detail.detail.reason;
      this.showAlert(`link-${detail.peerId}`, couldNotConnect(peer));
    });
    mesh.addEventListener('error', ({ detail }) => {
      const peer = this.peers.get(detail.peerId);
      // The alert says it to the user in words; the console keeps the browser's own error.
      console.warn('XES: setting up the link failed:', detail.detail);
      this.showAlert(`link-${detail.peerId}`,
        `Setting up audio with ${peer ? peer.name : 'someone'} failed: ${detail.detail}.`);
    });
    mesh.addEventListener('channelopen', ({ detail }) => {
      const link = mesh.links.get(detail.peerId);
      if (link && link.audio) link.sendData({ type: 'mute', muted: this.silenced });
    });
    mesh.addEventListener('data', ({ detail }) => this.onPeerData(detail.peerId, detail.detail));
    mesh.addEventListener('removed', ({ detail }) => {
      this.emit('linkremoved', { peerId: detail.peerId });
      this.clearAlert(`link-${detail.peerId}`);
    });
  }

  showTurnAlert(reason) {
    this.showAlert('turn',
      `The encrypted relay could not be used (${reason}), so links that need it cannot connect. ` +
      'Try again later, or turn off “Hide my IP (always relay)”.');
  }

  onLinkStats(stats) {
    for (const [peerId, info] of stats) {
      const peer = this.peers.get(peerId);
      if (!peer) continue;
      peer.link = info.link;
      peer.localType = info.localType;
      peer.remoteType = info.remoteType;
      peer.connectionState = info.connectionState;
      if (info.report) this.judgeLink(peer, sample(info.report, info.at));
    }
    this.changed();
  }

  judgeLink(peer, latest) {
    peer.samples.push(latest);
    if (peer.samples.length > QUALITY_SAMPLES) peer.samples.shift();
    const wasPoor = peer.quality.poor;
    peer.quality = judge(peer.samples);
    peer.played = { db: playedLevel(peer.samples), at: latest.at };
    if (peer.quality.poor && !wasPoor) this.announce(`The link with ${peer.name} is poor: ${peer.quality.poor}.`);
  }

  // --- devices -------------------------------------------------------------------------------------

  /**
   * Use another microphone (or the same one with other processing) without renegotiating: the
   * new track replaces the old one on every link's sender (`replaceTrack`), and the old one stops.
   * @param {() => Promise<MediaStream>} open opens the new microphone
   * @returns {Promise<boolean>} false when it could not be opened (the old one stays, an alert says why)
   */
  async switchMicrophone(open) {
    let stream;
    try {
      stream = await open();
    } catch (error) {
      this.showAlert('microphone', error instanceof MicrophoneError ? error.message : String(error));
      return false;
    }
    this.clearAlert('microphone');
    const [track] = stream.getAudioTracks();
    if (this.mesh) await this.mesh.replaceAudioTrack(track);
    if (this.localStream) {
      // Our MediaStream object stays the same (links made later add its track): swap inside it.
      for (const previous of this.localStream.getAudioTracks()) {
        this.localStream.removeTrack(previous);
        previous.stop();
      }
      this.localStream.addTrack(track);
    } else {
      this.localStream = stream;
    }
    this.applyMicrophone();
    this.emit('microphone', this.localStream);
    return true;
  }

  // --- events --------------------------------------------------------------------------------------

  changed() {
    this.emit('change');
  }

  /** @param {string} text a sentence for the polite live region */
  announce(text) {
    this.emit('announce', text);
  }

  /**
   * @param {string} type
   * @param {unknown} [detail]
   */
  emit(type, detail = null) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function newPeer(peer) {
  return {
    id: peer.id, name: peer.name, polite: peer.polite, connectionState: 'new', link: null, turnError: null,
    linkFailure: null,
    // A stranger who asked for a text chat (`text_only` in `joined`/`peer-joined`).
    textOnly: peer.text_only === true,
    // What their data channel said: null until it has (a peer may never say).
    muted: null,
    samples: [],
    quality: judge([]),
    // How loud their voice played here between the last two stats polls (quality.js
    // playedLevel, in dB after this listener's volume) and when: the speaking ring's reading.
    played: { db: -Infinity, at: -Infinity },
  };
}

/** "Could not connect to Ada: no network path (the relay could not be reached)". */
function couldNotConnect(peer) {
  const why = peer.linkFailure === LINK_FAILURE.noPath ? peer.linkFailure
    : `no network path (${peer.linkFailure})`;
  return `Could not connect to ${peer.name}: ${why}.`;
}
