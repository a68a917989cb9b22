// Wiring and view: the only module that touches the DOM. It turns clicks into protocol messages,
// server messages into mesh changes, and state into what the page shows.
//
// The page has two views: the landing page at `/` (new room, talk to a stranger) and the room at
// `/r/<id>`. Both end up in the same call: a mesh of direct links plus the participant list.

import * as protocol from './protocol.js';
import { Signalling, SignallingState, signallingUrl } from './signalling.js';
import { Mesh } from './mesh.js';
import { LINK_FAILURE } from './negotiation.js';
import {
  LevelMeters, MicrophoneError, RemoteVolumes, VOLUME_DEFAULT, VOLUME_MAX, VOLUME_MIN, clampVolume,
  openMicrophone, setMuted, stopStream,
} from './media.js';
import { LinkStats, RELAYED } from './stats.js';

const STORAGE_KEYS = Object.freeze({
  name: 'xes.name',
  relayOnly: 'xes.relayOnly',
  allowDirect: 'xes.allowDirectWithStrangers',
  key: 'xes.key',
});
// Per-person volumes, by display name, in sessionStorage: remembered for this tab's session only.
const VOLUMES_KEY = 'xes.volumes';

// A level above this (dBFS RMS) lights the speaking indicator; below it is room noise.
const SPEAKING_DB = -50;
const METER_INTERVAL_MS = 150;
// Ask for fresh TURN credentials when this share of their lifetime has passed.
const ICE_REFRESH_AT = 0.8;
// Join refusals that leave us outside the room (and free the microphone).
const JOIN_REFUSALS = new Set([
  'room-full', 'room-locked', 'password-required', 'wrong-password', 'banned', 'declined',
]);

// What the relay settings mean, with and without a relay on this server (`hello.relay`).
const RELAY_HINT = 'Audio goes through the encrypted relay, so the others never see your IP address. ' +
  'Slightly more delay.';
const RELAY_HINT_NO_RELAY = 'Unavailable: this server has no relay (TURN), so calls can only be ' +
  'direct, and the others in the room see your IP address.';
const ALLOW_DIRECT_HINT = 'Off by default: the call goes through the encrypted relay. A direct ' +
  'connection can have less delay, but it shows the stranger your IP address, which tells them ' +
  'roughly where you are and who your internet provider is.';
const ALLOW_DIRECT_HINT_NO_RELAY = 'Needed on this server, which has no relay: the call is direct ' +
  'and shows the stranger your IP address, which tells them roughly where you are and who your ' +
  'internet provider is.';
const NO_RELAY_FOR_STRANGERS = 'This server has no relay, so you can only talk to strangers who ' +
  'also allow a direct connection, and they will see your IP address. Tick “Allow a direct ' +
  'connection with strangers” if you accept that.';

const CONNECTION_WORDS = Object.freeze({
  new: 'Connecting…',
  connecting: 'Connecting…',
  connected: 'Connected',
  disconnected: 'Reconnecting…',
  failed: 'Could not connect',
  closed: 'Closed',
});

// --- small helpers -------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function load(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage disabled: remembering is a convenience, not a requirement
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // see load()
  }
}

/** The random key that lets a host's ban recognise this browser (never an IP address). */
function browserKey() {
  let key = load(STORAGE_KEYS.key);
  if (!key || key.length < 16 || key.length > 128) {
    const bytes = crypto.getRandomValues(new Uint8Array(24));
    key = btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_');
    store(STORAGE_KEYS.key, key);
  }
  return key;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- state ---------------------------------------------------------------------------------------

const route = parseRoute(location.pathname);

/**
 * Everything about the current call. `phase`: idle → joining → (lobby →) joined; for strangers
 * idle → queued → joined → (next) queued …
 */
const call = {
  phase: 'idle',
  roomId: route.roomId,
  isMatch: false,
  me: null, // {id, name}
  hostId: null,
  rules: null,
  peers: new Map(), // id -> {id, name, polite, connectionState, link, localType, remoteType}
  iceServers: [],
  iceExpiresAt: null,
  serverPolicy: 'all',
  // `hello.relay`: whether this server hands out a TURN relay; null until hello (or an older
  // server that does not say). Without one "Hide my IP" cannot work, and strangers meet only
  // if both allow a direct connection.
  serverRelay: null,
  localStream: null,
  // A clone of the microphone track that stays enabled while muted: it feeds our own level
  // meter, so the page can say "You are muted" when the user talks into a muted microphone.
  meterStream: null,
  muted: false,
  // What holds the microphone open while muted (push-to-talk): 'space' and/or 'button'.
  talkHeld: new Set(),
  mesh: null,
  refreshTimer: null,
  knocks: new Map(), // id -> name, while we are host
  // The largest max_peers a host may set: the server's maximum, from `hello.limits.max_peers`.
  maxCeiling: null,
  renderedRules: null, // the rules object the host's settings form last showed
  confirmingBan: null, // peer id whose "Ban" was pressed once: a ban cannot be undone
  awaitingSocket: false,
};

const signalling = new Signalling(signallingUrl(location));
const meters = new LevelMeters();
const volumes = new RemoteVolumes(() => meters.audioContext());
const linkStats = new LinkStats(() => (call.mesh ? call.mesh.peerConnections() : new Map()));

function parseRoute(pathname) {
  const roomMatch = /^\/r\/([^/]+)\/?$/.exec(pathname);
  if (roomMatch) return { view: 'room', roomId: decodeURIComponent(roomMatch[1]) };
  return { view: 'landing', roomId: null };
}

/** "Hide my IP (always relay)", unless the server said it has no relay to hide behind. */
function relayOnly() {
  return load(STORAGE_KEYS.relayOnly) === 'true' && call.serverRelay !== false;
}

/** Whether the user lets calls with strangers go direct (which shows them the user's IP). */
function allowDirectWithStrangers() {
  return load(STORAGE_KEYS.allowDirect) === 'true';
}

/**
 * The RTCConfiguration for new links: the server's ICE servers, relay if the user asked for it
 * ("Hide my IP") or the server says so. For a stranger it does unless both allowed a direct
 * connection, which the server knows from `match`; so one side's consent never overrides the
 * other's refusal.
 */
function configuration() {
  const relay = relayOnly() || call.serverPolicy === 'relay';
  return { iceServers: call.iceServers, iceTransportPolicy: relay ? 'relay' : 'all' };
}

// --- alerts --------------------------------------------------------------------------------------

const alerts = new Map(); // key -> sentence; one per concern so a repeat replaces, not piles up

function showAlert(key, text) {
  alerts.set(key, text);
  renderAlerts();
}

function clearAlert(key) {
  if (alerts.delete(key)) renderAlerts();
}

function renderAlerts() {
  const container = $('alerts');
  container.replaceChildren();
  for (const [key, text] of alerts) {
    const item = element('div', 'alert');
    item.append(element('p', 'alert__text', text));
    const close = element('button', 'alert__close', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Dismiss message');
    close.addEventListener('click', () => clearAlert(key));
    item.append(close);
    container.append(item);
  }
}

// --- joining and leaving -------------------------------------------------------------------------

async function ensureMicrophone() {
  if (call.localStream) return true;
  try {
    call.localStream = await openMicrophone();
  } catch (error) {
    const text = error instanceof MicrophoneError ? error.message : String(error);
    showAlert('microphone', text);
    return false;
  }
  clearAlert('microphone');
  applyMicrophone();
  call.meterStream = new MediaStream(call.localStream.getAudioTracks().map((track) => track.clone()));
  meters.attach('self', call.meterStream);
  return true;
}

async function connectSignalling() {
  // While a first join or match waits for the socket, a reconnect must not also send one.
  call.awaitingSocket = true;
  signalling.connect();
  await signalling.whenOpen();
  call.awaitingSocket = false;
}

async function joinRoom(event) {
  event.preventDefault();
  if (call.phase !== 'idle') return;
  const checked = protocol.checkName($('display-name').value);
  if (!checked.ok) {
    showAlert('name', checked.reason);
    $('display-name').focus();
    return;
  }
  clearAlert('name');
  clearAlert('room-refused'); // a retry gets a fresh answer, announced again if it is the same
  clearAlert('removed');
  store(STORAGE_KEYS.name, checked.name);
  if (!protocol.ID_PATTERN.test(call.roomId ?? '')) {
    showAlert('room', 'This room link is not valid. Ask for the link again, or start a new room.');
    return;
  }
  await startCall(checked.name, sendJoin);
}

/**
 * Joining a room and asking for a stranger start alike: the microphone first (a refusal stops
 * here, with its explanation shown), then the signalling socket, then the first message.
 * @param {string} name the display name, already checked
 * @param {() => void} sendFirstMessage sends `join` or `match`
 */
async function startCall(name, sendFirstMessage) {
  call.me = { id: null, name };
  call.phase = 'joining';
  render();
  if (!(await ensureMicrophone())) {
    call.phase = 'idle';
    render();
    return;
  }
  await connectSignalling();
  sendFirstMessage();
}

function sendJoin() {
  signalling.send(protocol.join({
    room: call.roomId,
    name: call.me.name,
    key: browserKey(),
    password: $('room-password') ? $('room-password').value : undefined,
  }));
}

/** Close every link and forget the room; keeps the microphone when `keepMicrophone`. */
function leaveCall({ keepMicrophone = false } = {}) {
  if (call.mesh) call.mesh.closeAll();
  call.mesh = null;
  linkStats.stop();
  clearTimeout(call.refreshTimer);
  call.refreshTimer = null;
  call.peers.clear();
  call.knocks.clear();
  call.hostId = null;
  call.rules = null;
  call.renderedRules = null;
  call.confirmingBan = null;
  for (const sink of document.querySelectorAll('audio[data-peer]')) sink.remove();
  for (const key of [...meters.meters.keys()]) if (key !== 'self') meters.detach(key);
  for (const key of [...volumes.voices.keys()]) volumes.detach(key);
  call.talkHeld.clear();
  applyMicrophone();
  if (!keepMicrophone) {
    meters.detach('self');
    stopStream(call.meterStream);
    call.meterStream = null;
    stopStream(call.localStream);
    call.localStream = null;
  }
  clearAlert('turn');
  clearAlert('relay-unavailable');
}

function onLeaveClick() {
  signalling.send(call.isMatch ? protocol.stop() : protocol.leave());
  leaveCall();
  call.phase = 'idle';
  call.isMatch = false;
  render();
  (route.view === 'room' ? $('join') : $('match-start')).focus();
}

/** Leave the lobby before the host answers. */
function onLobbyCancel() {
  if (call.phase !== 'lobby') return;
  signalling.send(protocol.leave());
  leaveCall();
  call.phase = 'idle';
  render();
  $('join').focus();
}

// --- host controls ---------------------------------------------------------------------------------

function isHost() {
  return call.phase === 'joined' && !call.isMatch && call.me !== null && call.hostId === call.me.id;
}

/** Send `set-rules`; the page shows the new rules when the server confirms them with `rules`. */
function sendRules(rules) {
  if (!isHost()) return;
  signalling.send(protocol.setRules(rules));
}

function onPasswordSet(event) {
  event.preventDefault();
  const input = $('rule-password');
  if (input.value.length === 0) {
    showAlert('rules', 'Type a password first, then press “Set password”.');
    input.focus();
    return;
  }
  clearAlert('rules');
  sendRules({ password: input.value.slice(0, protocol.PASSWORD_MAX_LENGTH) });
  input.value = ''; // the host already knows it; do not leave it sitting in the page
}

function onMaxSave(event) {
  event.preventDefault();
  const input = $('rule-max');
  const ceiling = call.maxCeiling ?? protocol.MIN_MAX_PEERS;
  const value = Number(input.value);
  if (!Number.isInteger(value) || value < protocol.MIN_MAX_PEERS || value > ceiling) {
    showAlert('rules', `“Maximum people” must be a whole number from ${protocol.MIN_MAX_PEERS} to ${ceiling}.`);
    input.focus();
    return;
  }
  clearAlert('rules');
  sendRules({ max_peers: value });
}

/** Remove or ban a member (`kind` is 'remove' or 'ban'). */
function moderate(kind, peerId) {
  if (!isHost()) return;
  call.confirmingBan = null;
  signalling.send(kind === 'ban' ? protocol.ban(peerId) : protocol.remove(peerId));
}

/** First press of "Ban": ask again, since there is no unban for the life of the room. */
function askToBan(peerId, confirming) {
  call.confirmingBan = confirming ? peerId : null;
  render();
  const item = document.querySelector(`#participants li[data-peer="${CSS.escape(peerId)}"]`);
  const target = item && item.querySelector(confirming ? '[data-action="confirm-ban"]' : '[data-action="ban"]');
  if (target) target.focus(); // the pressed button was replaced: keep keyboard users in place
}

/** Let a knocker in, or turn it away (the server tells the host nothing back for a decline). */
function answerKnock(peerId, admit) {
  if (!isHost()) return;
  signalling.send(admit ? protocol.admit(peerId) : protocol.decline(peerId));
  if (!admit) {
    call.knocks.delete(peerId);
    render();
  }
}

// --- talking controls ------------------------------------------------------------------------------

/** The microphone sends while unmuted, or while muted and push-to-talk is held. */
function applyMicrophone() {
  setMuted(call.localStream, call.muted && call.talkHeld.size === 0);
}

function onMuteClick() {
  call.muted = !call.muted;
  applyMicrophone();
  render();
}

/** Push-to-talk: `holder` ('space' or 'button') starts or stops holding the microphone open. */
function holdToTalk(holder, held) {
  const before = call.talkHeld.size > 0;
  if (held && call.phase === 'joined') call.talkHeld.add(holder);
  else call.talkHeld.delete(holder);
  if (before === call.talkHeld.size > 0) return;
  applyMicrophone();
  render();
}

/** Typing a name, a password or a number must not mute the call or open the microphone. */
function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || target.matches('input, textarea, select');
}

function onKeyDown(event) {
  if (call.phase !== 'joined' || event.ctrlKey || event.metaKey || event.altKey) return;
  if (isTyping(event.target)) return;
  if (event.code === 'Space' && event.target !== $('talk')) { // the button handles its own keys
    event.preventDefault(); // Space would also press the focused button (e.g. Leave)
    if (!event.repeat) holdToTalk('space', true);
  } else if (event.code === 'KeyM' && !event.repeat) {
    event.preventDefault();
    onMuteClick();
  }
}

function onKeyUp(event) {
  if (event.code !== 'Space' || !call.talkHeld.has('space')) return;
  event.preventDefault();
  holdToTalk('space', false);
}

function setUpTalkButton() {
  const button = $('talk');
  button.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    button.setPointerCapture(event.pointerId); // the release counts even off the button
    holdToTalk('button', true);
  });
  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
    button.addEventListener(type, () => holdToTalk('button', false));
  }
  button.addEventListener('keydown', (event) => {
    if (event.code !== 'Space' && event.code !== 'Enter') return;
    event.preventDefault();
    if (!event.repeat) holdToTalk('button', true);
  });
  button.addEventListener('keyup', (event) => {
    if (event.code !== 'Space' && event.code !== 'Enter') return;
    event.preventDefault();
    holdToTalk('button', false);
  });
  button.addEventListener('blur', () => holdToTalk('button', false));
  button.addEventListener('contextmenu', (event) => event.preventDefault()); // long press on touch
  // A key released in another window never reaches us: losing focus ends every hold.
  window.addEventListener('blur', () => {
    holdToTalk('space', false);
    holdToTalk('button', false);
  });
}

// --- per-person volume -----------------------------------------------------------------------------

function storedVolumes() {
  try {
    const parsed = JSON.parse(sessionStorage.getItem(VOLUMES_KEY) ?? '{}');
    return parsed !== null && typeof parsed === 'object' ? parsed : {};
  } catch {
    return {}; // storage disabled or garbled: everyone at 100 %
  }
}

function volumeFor(name) {
  const stored = storedVolumes();
  return Object.hasOwn(stored, name) ? clampVolume(stored[name]) : VOLUME_DEFAULT;
}

function rememberVolume(name, percent) {
  const stored = storedVolumes();
  stored[name] = percent;
  try {
    sessionStorage.setItem(VOLUMES_KEY, JSON.stringify(stored));
  } catch {
    // see storedVolumes()
  }
}

function onVolumeInput(peerId, input) {
  const percent = clampVolume(input.value);
  const peer = call.peers.get(peerId);
  volumes.setVolume(peerId, percent);
  if (peer) rememberVolume(peer.name, percent);
  showVolume(input, percent);
}

function showVolume(input, percent) {
  input.setAttribute('aria-valuetext', `${percent}%`);
  input.closest('.participant__volume').querySelector('output').textContent = `${percent}%`;
}

// --- server messages -----------------------------------------------------------------------------

function onServerMessage({ detail: message }) {
  switch (message.type) {
    case 'hello':
      call.maxCeiling = message.limits?.max_peers ?? call.maxCeiling;
      call.serverRelay = typeof message.relay === 'boolean' ? message.relay : null;
      break;
    case 'joined':
      onJoined(message);
      break;
    case 'peer-joined':
      call.peers.set(message.peer.id, newPeer(message.peer));
      call.knocks.delete(message.peer.id);
      if (call.mesh) call.mesh.add(message.peer, false);
      break;
    case 'peer-left':
      call.peers.delete(message.peer);
      if (call.mesh) call.mesh.remove(message.peer);
      break;
    case 'signal':
      if (call.mesh) call.mesh.handleSignal(message.from, message.data);
      break;
    case 'left':
      // We already tore down when we sent leave/next/stop.
      break;
    case 'host':
      call.hostId = message.peer;
      break;
    case 'rules':
      call.rules = message.rules;
      call.maxCeiling = Math.max(call.maxCeiling ?? 0, message.rules.max_peers);
      break;
    case 'lobby':
      call.phase = 'lobby';
      clearAlert('room-refused'); // e.g. "this room has a password", now given
      break;
    case 'knock':
      call.knocks.set(message.peer.id, message.peer.name);
      break;
    case 'knock-withdrawn':
      call.knocks.delete(message.peer);
      break;
    case 'removed':
      leaveCall();
      call.phase = 'idle';
      call.isMatch = false;
      showAlert('removed', protocol.describeRemoval(message.banned));
      break;
    case 'queued':
      call.phase = 'queued';
      break;
    case 'unqueued':
      if (call.phase === 'queued') call.phase = 'idle';
      break;
    case 'ice-servers':
      call.iceServers = message.ice_servers;
      call.iceExpiresAt = message.ice_expires_at ?? null;
      if (call.mesh) call.mesh.setConfiguration(configuration());
      scheduleIceRefresh();
      break;
    case 'error':
      onServerError(message);
      break;
    default:
      break;
  }
  render();
}

function newPeer(peer) {
  return {
    id: peer.id, name: peer.name, polite: peer.polite, connectionState: 'new', link: null, turnError: null,
    linkFailure: null,
  };
}

function onJoined(message) {
  // A rejoin after a lost connection, or a new match: links from before are to peer ids that
  // no longer exist on the server, so start clean (the microphone stays).
  const previousId = call.me ? call.me.id : null;
  leaveCall({ keepMicrophone: true });
  call.phase = 'joined';
  call.roomId = message.room;
  call.isMatch = message.match === true;
  call.me = { id: message.you, name: call.me ? call.me.name : '' };
  call.hostId = message.host;
  call.rules = message.rules;
  // A server older than `hello.limits.max_peers`: a fresh room's size is its maximum.
  call.maxCeiling = Math.max(call.maxCeiling ?? 0, message.rules.max_peers);
  call.iceServers = message.ice_servers;
  call.iceExpiresAt = message.ice_expires_at ?? null;
  call.serverPolicy = message.ice_transport_policy;
  clearAlert('room-refused');
  clearAlert('removed');
  if (route.view === 'room') $('password-field').hidden = true; // the landing page has no join form
  if (configuration().iceTransportPolicy === 'relay' && !protocol.hasTurn(call.iceServers)) {
    showAlert('relay-unavailable',
      'Relay mode is unavailable: this server has no relay (TURN) configured, so with ' +
      '“Hide my IP (always relay)” on, calls cannot connect. Turn it off to connect directly.');
  }
  call.mesh = new Mesh({ configuration, localStream: call.localStream });
  wireMesh(call.mesh);
  for (const peer of message.peers) {
    // Our own old self, after a network change: the server keeps it until its heartbeat sees
    // that socket is dead. No link to it.
    if (peer.id === previousId) continue;
    call.peers.set(peer.id, newPeer(peer));
    call.mesh.add(peer, true); // we are the newcomer: we offer to everyone already here
  }
  linkStats.start();
  scheduleIceRefresh();
}

function onServerError(message) {
  const sentence = protocol.describeError(message);
  if (JOIN_REFUSALS.has(message.code) && (call.phase === 'joining' || call.phase === 'lobby')) {
    leaveCall();
    call.phase = 'idle';
    showAlert('room-refused', sentence);
    if (message.code === 'password-required' || message.code === 'wrong-password') {
      $('password-field').hidden = false;
      render(); // enables the field again: a disabled input cannot take focus
      $('room-password').focus();
    }
    return;
  }
  if (message.code === 'turn-unavailable' && message.ref === 'match') {
    // No relay and no consent: the page normally stops this before sending (see sendMatch).
    leaveCall();
    call.phase = 'idle';
    showAlert('match-refused', NO_RELAY_FOR_STRANGERS);
    return;
  }
  if (message.code === 'already-joined' || message.code === 'not-queued') {
    return; // a double click; the state we show is already right
  }
  if (message.code === 'room-full' && message.ref === 'admit') {
    // The joiner's sentence ("ask someone inside to make room") would confuse the host.
    showAlert('error-admit', 'The room is full, so nobody else can be let in. Raise “Maximum people” ' +
      'or wait for someone to leave.');
    return;
  }
  showAlert(`error-${message.code}`, sentence);
}

function scheduleIceRefresh() {
  clearTimeout(call.refreshTimer);
  call.refreshTimer = null;
  if (!call.iceExpiresAt || call.iceServers.length === 0) return;
  const lifetimeMs = call.iceExpiresAt * 1000 - Date.now();
  // Already "expired" by our clock means our clock is off, not that the credentials are: asking
  // again at once would loop, so ask once a minute.
  const delayMs = lifetimeMs <= 0 ? 60_000 : Math.max(5000, lifetimeMs * ICE_REFRESH_AT);
  call.refreshTimer = setTimeout(() => signalling.send(protocol.iceRefresh()), delayMs);
}

function wireMesh(mesh) {
  mesh.addEventListener('signal', ({ detail }) => {
    signalling.send(protocol.signal(detail.peerId, detail.detail));
  });
  mesh.addEventListener('track', ({ detail }) => attachRemoteStream(detail.peerId, detail.detail));
  mesh.addEventListener('statechange', ({ detail }) => {
    const peer = call.peers.get(detail.peerId);
    if (peer) peer.connectionState = detail.detail;
    if (peer && detail.detail === 'connected' && peer.linkFailure) {
      peer.linkFailure = null; // a restart found a path after all
      clearAlert(`link-${detail.peerId}`);
    }
    if (peer && peer.turnError && detail.detail === 'failed') showTurnAlert(peer.turnError);
    if (detail.detail === 'connected') linkStats.poll();
    render();
  });
  mesh.addEventListener('turnerror', ({ detail }) => {
    const peer = call.peers.get(detail.peerId);
    if (!peer) return;
    peer.turnError = detail.detail.reason;
    // Without relay-only mode a direct path may still work, so a TURN error only matters if the
    // link then fails; with relay-only mode it means the link cannot connect at all.
    if (configuration().iceTransportPolicy === 'relay' || peer.connectionState === 'failed') {
      showTurnAlert(peer.turnError);
    }
  });
  mesh.addEventListener('linkfailure', ({ detail }) => {
    const peer = call.peers.get(detail.peerId);
    if (!peer) return;
    peer.linkFailure = detail.detail.reason;
    showAlert(`link-${detail.peerId}`, couldNotConnect(peer));
    render();
  });
  mesh.addEventListener('error', ({ detail }) => {
    const peer = call.peers.get(detail.peerId);
    showAlert(`link-${detail.peerId}`,
      `Setting up audio with ${peer ? peer.name : 'someone'} failed: ${detail.detail}.`);
  });
  mesh.addEventListener('removed', ({ detail }) => {
    const sink = document.querySelector(`audio[data-peer="${CSS.escape(detail.peerId)}"]`);
    if (sink) sink.remove();
    meters.detach(detail.peerId);
    volumes.detach(detail.peerId);
    clearAlert(`link-${detail.peerId}`);
  });
}

/** "Could not connect to Ada: no network path (the relay could not be reached)". */
function couldNotConnect(peer) {
  const why = peer.linkFailure === LINK_FAILURE.noPath ? peer.linkFailure
    : `no network path (${peer.linkFailure})`;
  return `Could not connect to ${peer.name}: ${why}.`;
}

function showTurnAlert(reason) {
  showAlert('turn',
    `The encrypted relay could not be used (${reason}), so links that need it cannot connect. ` +
    'Try again later, or turn off \u201cHide my IP (always relay)\u201d.');
}

/**
 * Play a remote stream through its volume control. Chromium only feeds WebAudio (the volume and
 * our level meter) while the stream also plays in a media element, so it plays in a muted one.
 */
function attachRemoteStream(peerId, stream) {
  let sink = document.querySelector(`audio[data-peer="${CSS.escape(peerId)}"]`);
  if (!sink) {
    sink = document.createElement('audio');
    sink.autoplay = true;
    sink.muted = true; // the sound comes from the volume control's GainNode
    sink.dataset.peer = peerId;
    $('sinks').append(sink);
  }
  if (sink.srcObject !== stream) sink.srcObject = stream;
  sink.play().catch(blockedPlayback);
  const peer = call.peers.get(peerId);
  volumes.attach(peerId, stream, peer ? volumeFor(peer.name) : VOLUME_DEFAULT);
  meters.attach(peerId, stream);
  // Without a user gesture the autoplay policy keeps the AudioContext suspended: say so.
  setTimeout(() => {
    if (volumes.suspended()) blockedPlayback();
  }, 1000);
}

function blockedPlayback() {
  showAlert('autoplay', 'Your browser blocked audio playback. Click anywhere on the page to hear the call.');
  document.addEventListener('click', resumePlayback, { once: true });
}

/** A click is the user gesture autoplay wants: start every sink that is paused, and the audio. */
function resumePlayback() {
  for (const sink of document.querySelectorAll('audio[data-peer]')) sink.play().catch(() => {});
  meters.audioContext();
  clearAlert('autoplay');
}

linkStats.addEventListener('update', ({ detail }) => {
  for (const [peerId, info] of detail) {
    const peer = call.peers.get(peerId);
    if (!peer) continue;
    peer.link = info.link;
    peer.localType = info.localType;
    peer.remoteType = info.remoteType;
    peer.connectionState = info.connectionState;
  }
  render();
});

// --- signalling connection -----------------------------------------------------------------------

signalling.addEventListener('message', onServerMessage);

signalling.addEventListener('protocolerror', ({ detail }) => {
  console.warn('XES: ignored a malformed server message:', detail.message);
});

signalling.addEventListener('statechange', ({ detail }) => {
  if (detail.state === SignallingState.LOST) {
    const inCall = call.phase === 'joined';
    showAlert('signalling', inCall
      ? 'Connection to the server lost. Calls already connected keep going; reconnecting…'
      : 'Connection to the server lost. Reconnecting…');
  } else if (detail.state === SignallingState.OPEN) {
    clearAlert('signalling');
    // The server forgot us with the old socket; come back under the new peer id.
    if (detail.previous === SignallingState.LOST && call.me && !call.awaitingSocket) {
      if (call.phase === 'joined' || call.phase === 'joining' || call.phase === 'lobby') {
        if (call.isMatch) {
          leaveCall({ keepMicrophone: false });
          call.phase = 'idle';
          call.isMatch = false;
          showAlert('signalling-match', 'The connection dropped, so the conversation ended. Press “Talk to someone” to meet someone new.');
        } else {
          call.phase = 'joining';
          sendJoin();
        }
      } else if (call.phase === 'queued') {
        call.phase = 'idle';
      }
    }
  }
  render();
});

window.addEventListener('pagehide', () => {
  // Tell the room at once instead of leaving it to the heartbeat.
  if (call.phase === 'joined') signalling.send(call.isMatch ? protocol.stop() : protocol.leave());
});

// --- matchmaking (landing page) ------------------------------------------------------------------

async function startMatch(event) {
  event.preventDefault();
  if (call.phase !== 'idle') return;
  const checked = protocol.checkName($('match-name').value);
  if (!checked.ok) {
    showAlert('name', checked.reason);
    $('match-name').focus();
    return;
  }
  clearAlert('name');
  clearAlert('signalling-match');
  store(STORAGE_KEYS.name, checked.name);
  await startCall(checked.name, sendMatch);
}

function sendMatch() {
  const direct = allowDirectWithStrangers();
  if (call.serverRelay === false && !direct) {
    // Learnt from `hello` only now, with the socket: say so instead of queueing (the server
    // would refuse anyway), and free the microphone.
    leaveCall();
    call.phase = 'idle';
    render();
    $('allow-direct').focus();
    return;
  }
  signalling.send(protocol.match({
    name: call.me.name,
    tags: protocol.parseTags($('match-tags').value),
    language: $('match-language').value.trim().slice(0, 32),
    key: browserKey(),
    direct,
  }));
}

function nextMatch() {
  if (call.phase !== 'joined' && call.phase !== 'queued') return;
  if (call.phase === 'joined') {
    signalling.send(protocol.next());
    leaveCall({ keepMicrophone: true });
    call.phase = 'queued';
  }
  render();
}

function stopMatch() {
  signalling.send(protocol.stop());
  leaveCall();
  call.phase = 'idle';
  call.isMatch = false;
  render();
}

// --- rendering -----------------------------------------------------------------------------------

function render() {
  const inCall = call.phase === 'joined';
  const callSection = $('call');
  callSection.hidden = !inCall;
  $('mute').setAttribute('aria-pressed', String(call.muted));
  $('mute').textContent = call.muted ? 'Unmute' : 'Mute';
  $('mute').classList.toggle('is-active', call.muted);
  // Held while unmuted changes nothing, so only a held-open muted microphone lights up (the
  // name stays "Hold to talk": it is a momentary button, not a toggle).
  const talking = call.muted && call.talkHeld.size > 0;
  $('talk').classList.toggle('is-active', talking);

  if (route.view === 'room') renderRoomView(inCall);
  else renderLandingView(inCall);

  renderRules();
  renderParticipants();
  renderKnocks();
  renderSettings();
}

function renderRoomView(inCall) {
  $('join-form').hidden = inCall;
  $('join').disabled = call.phase !== 'idle';
  $('join').textContent = call.phase === 'joining' ? 'Joining…' : 'Join';
  $('join').hidden = call.phase === 'lobby';
  $('lobby-cancel').hidden = call.phase !== 'lobby';
  $('lobby-note').hidden = call.phase !== 'lobby';
  $('display-name').disabled = call.phase !== 'idle';
  $('room-password').disabled = call.phase !== 'idle';
  const noRelay = call.serverRelay === false;
  $('relay-only').disabled = call.phase !== 'idle' || noRelay;
  $('relay-only').checked = relayOnly();
  $('relay-hint').textContent = noRelay ? RELAY_HINT_NO_RELAY : RELAY_HINT;
  const others = `${call.peers.size} other${call.peers.size === 1 ? '' : 's'}`;
  const states = {
    idle: 'Not joined yet.',
    joining: 'Joining…',
    lobby: 'Waiting for the host to let you in…',
    joined: isHost()
      ? `You are in the call with ${others}. You are the host.`
      : `You are in the call with ${others}.`,
  };
  $('room-state').textContent = states[call.phase] ?? '';
}

function renderLandingView(inCall) {
  const words = {
    idle: '',
    joining: 'Connecting…',
    queued: 'Looking for someone to talk to…',
    joined: 'Connected with a stranger.',
  };
  $('match-status').textContent = words[call.phase] ?? '';
  // Without a relay, asking for a stranger is consenting to show them your address: the button
  // waits for that consent, and the page says why before anything is queued.
  const noRelay = call.serverRelay === false;
  $('match-no-relay').hidden = !noRelay;
  $('allow-direct-hint').textContent = noRelay ? ALLOW_DIRECT_HINT_NO_RELAY : ALLOW_DIRECT_HINT;
  $('match-start').disabled = call.phase !== 'idle' || (noRelay && !allowDirectWithStrangers());
  // Sent with `match`, so it may change until then, not while queued or in a call.
  $('allow-direct').disabled = call.phase !== 'idle';
  $('match-next').disabled = !inCall;
  $('match-stop').disabled = call.phase === 'idle';
  if (inCall && call.isMatch && call.peers.size === 0) {
    $('match-status').textContent =
      'The other person left. Press Next to meet someone new, or Stop.';
  } else if (inCall && call.isMatch) {
    const relayed = [...call.peers.values()].some((peer) => peer.link === RELAYED);
    // With direct allowed, our own candidates (our IP) went to the stranger even if the link
    // ended up relayed, so only claim privacy when we kept to the relay.
    const hidden = relayed && configuration().iceTransportPolicy === 'relay';
    $('match-status').textContent = hidden
      ? 'Connected with a stranger through the encrypted relay: they do not see your IP address.'
      : relayed ? 'Connected with a stranger through the encrypted relay.' : 'Connected with a stranger.';
  }
}

function renderRules() {
  const list = $('room-rules');
  if (call.phase !== 'joined' || !call.rules || call.isMatch) {
    list.replaceChildren();
    list.hidden = true;
    return;
  }
  list.hidden = false;
  const rules = call.rules;
  list.replaceChildren(...protocol.describeRules(rules).map((label) => {
    const flagged = (label === 'Locked' && rules.locked) || (label === 'Password set' && rules.password) ||
      (label === 'Lobby on' && rules.lobby);
    return element('li', flagged ? 'chip chip--on' : 'chip', label);
  }));
}

/**
 * Update the list in place, keyed by `data-peer`: rebuilding it on every render (stats arrive
 * each second) would take keyboard focus off a "Remove"/"Ban" button under the user's hands.
 */
function renderParticipants() {
  const list = $('participants');
  if (call.phase !== 'joined') {
    list.replaceChildren();
    return;
  }
  const entries = [];
  if (call.me) {
    entries.push({
      key: 'self',
      id: call.me.id,
      name: call.me.name,
      self: true,
      meta: [call.muted ? (call.talkHeld.size > 0 ? 'Muted, talking while held' : 'Muted') : 'Microphone on'],
    });
  }
  for (const peer of call.peers.values()) {
    // Past the bound (or after a failed restart) the list says why, instead of "Connecting…".
    const meta = [peer.linkFailure && peer.connectionState !== 'connected'
      ? `Could not connect: ${peer.linkFailure}`
      : CONNECTION_WORDS[peer.connectionState] ?? peer.connectionState];
    if (peer.link) meta.push(peer.link);
    entries.push({ key: peer.id, id: peer.id, name: peer.name, self: false, meta, link: peer.link });
  }
  const existing = new Map([...list.children].map((item) => [item.dataset.peer, item]));
  const items = entries.map((entry) => {
    const item = existing.get(entry.key) ?? participantItem(entry.key);
    updateParticipantItem(item, entry);
    return item;
  });
  keepChildren(list, items);
}

/** Make `items` the children of `list`, touching the DOM only when the order changed. */
function keepChildren(list, items) {
  const same = items.length === list.children.length && items.every((item, i) => list.children[i] === item);
  if (!same) list.replaceChildren(...items);
}

function participantItem(key) {
  const item = element('li', 'participant');
  item.dataset.peer = key;
  const avatar = element('span', 'participant__avatar');
  avatar.setAttribute('aria-hidden', 'true');
  const body = element('div', 'participant__body');
  const title = element('p', 'participant__name');
  title.append(element('span', 'participant__label'), element('span', 'participant__badges'));
  body.append(title, element('p', 'participant__meta'));
  const speaking = element('span', 'participant__speaking');
  speaking.setAttribute('aria-hidden', 'true');
  speaking.title = 'Speaking';
  item.append(avatar, body, speaking);
  if (key !== 'self') item.append(volumeControl(key));
  item.append(element('div', 'participant__actions'));
  return item;
}

/** "Volume for <name>": 0–200 % for this listener only; the label follows the name. */
function volumeControl(peerId) {
  const wrapper = element('div', 'participant__volume');
  const input = document.createElement('input');
  input.type = 'range';
  input.id = `volume-${peerId}`;
  input.min = String(VOLUME_MIN);
  input.max = String(VOLUME_MAX);
  input.step = '10';
  const peer = call.peers.get(peerId);
  input.value = String(peer ? volumeFor(peer.name) : VOLUME_DEFAULT);
  const label = element('label', 'participant__volume-label');
  label.htmlFor = input.id;
  const output = element('output', 'participant__volume-value');
  output.htmlFor = input.id;
  wrapper.append(label, input, output);
  input.addEventListener('input', () => onVolumeInput(peerId, input));
  showVolume(input, Number(input.value));
  return wrapper;
}

function updateParticipantItem(item, { id, name, self, meta, link }) {
  item.classList.toggle('is-muted', self && call.muted);
  item.querySelector('.participant__avatar').textContent = [...name][0]?.toUpperCase() ?? '?';
  item.querySelector('.participant__label').textContent = name;
  const volumeLabel = item.querySelector('.participant__volume-label');
  if (volumeLabel && volumeLabel.textContent !== `Volume for ${name}`) volumeLabel.textContent = `Volume for ${name}`;
  const badges = [];
  if (self) badges.push(element('span', 'badge', 'you'));
  if (id && id === call.hostId && !call.isMatch) badges.push(element('span', 'badge badge--host', 'host'));
  item.querySelector('.participant__badges').replaceChildren(...badges);
  const details = item.querySelector('.participant__meta');
  details.replaceChildren();
  meta.forEach((text, index) => {
    if (index > 0) details.append(element('span', 'sep', ' · '));
    const part = element('span', text === link ? `link link--${link === RELAYED ? 'relay' : 'direct'}` : '', text);
    details.append(part);
  });
  const actions = item.querySelector('.participant__actions');
  if (self || !isHost()) {
    actions.replaceChildren();
    actions.hidden = true;
    delete actions.dataset.mode;
    return;
  }
  actions.hidden = false;
  const mode = call.confirmingBan === id ? 'confirm' : 'normal';
  if (actions.dataset.mode !== mode) {
    actions.dataset.mode = mode;
    actions.replaceChildren(...(mode === 'confirm'
      ? [
        element('span', 'participant__question', 'Ban while this room lasts?'),
        actionButton('Confirm ban', 'button button--small button--danger', () => moderate('ban', id), 'confirm-ban'),
        actionButton('Cancel', 'button button--small', () => askToBan(id, false), 'cancel-ban'),
      ]
      : [
        actionButton('Remove', 'button button--small', () => moderate('remove', id), 'remove'),
        actionButton('Ban', 'button button--small button--danger', () => askToBan(id, true), 'ban'),
      ]));
  }
  // Names can repeat, so the id decides what a click does; the label says whom it hits.
  const labels = {
    remove: `Remove ${name}`, ban: `Ban ${name}`, 'confirm-ban': `Confirm ban of ${name}`, 'cancel-ban': `Do not ban ${name}`,
  };
  for (const button of actions.querySelectorAll('button')) {
    button.setAttribute('aria-label', labels[button.dataset.action]);
  }
}

function actionButton(text, className, onClick, action) {
  const button = element('button', className, text);
  button.type = 'button';
  if (action) button.dataset.action = action;
  button.addEventListener('click', onClick);
  return button;
}

/** The host's view of the lobby: who knocks, with Admit and Decline for each. */
function renderKnocks() {
  const section = $('lobby-queue');
  const list = $('knockers');
  const show = isHost() && call.knocks.size > 0;
  section.hidden = !show;
  if (!show) {
    list.replaceChildren();
    return;
  }
  const existing = new Map([...list.children].map((item) => [item.dataset.peer, item]));
  const items = [...call.knocks].map(([id, name]) => {
    let item = existing.get(id);
    if (!item) {
      item = element('li', 'knocker');
      item.dataset.peer = id;
      const label = element('span', 'knocker__name', name);
      const actions = element('div', 'knocker__actions');
      const admit = actionButton('Admit', 'button button--small button--primary', () => answerKnock(id, true));
      const decline = actionButton('Decline', 'button button--small', () => answerKnock(id, false));
      admit.setAttribute('aria-label', `Admit ${name}`);
      decline.setAttribute('aria-label', `Decline ${name}`);
      actions.append(admit, decline);
      item.append(label, actions);
    }
    return item;
  });
  keepChildren(list, items);
}

/**
 * The host's settings form. Inputs follow the server's rules only when those change, so a render
 * between a click and the server's answer does not flip a checkbox back or wipe what is typed.
 */
function renderSettings() {
  const section = $('room-settings');
  section.hidden = !isHost();
  if (section.hidden || call.renderedRules === call.rules) return;
  const rules = call.rules;
  call.renderedRules = rules;
  $('rule-locked').checked = rules.locked;
  $('rule-lobby').checked = rules.lobby;
  $('rule-password-clear').disabled = !rules.password;
  $('rule-password-state').textContent = rules.password
    ? 'A password is set: newcomers must type it to join.'
    : 'No password: anyone with the link can join.';
  const ceiling = Math.max(call.maxCeiling ?? rules.max_peers, rules.max_peers);
  const max = $('rule-max');
  max.max = String(ceiling);
  max.min = String(protocol.MIN_MAX_PEERS);
  max.value = String(rules.max_peers);
  $('rule-max-hint').textContent =
    `From ${protocol.MIN_MAX_PEERS} to ${ceiling}. People already in the call stay.`;
}

function updateSpeaking() {
  const silenced = call.muted && call.talkHeld.size === 0;
  for (const item of document.querySelectorAll('#participants li[data-peer]')) {
    const key = item.dataset.peer;
    const speaking = key === 'self' && silenced ? false : meters.level(key) > SPEAKING_DB;
    item.classList.toggle('is-speaking', speaking);
  }
  // Talking into a muted microphone: the meter listens to a clone that mute leaves on.
  const unheard = call.phase === 'joined' && silenced && meters.level('self') > SPEAKING_DB;
  const notice = $('muted-notice');
  const text = unheard ? 'You are muted' : '';
  if (notice.textContent !== text) notice.textContent = text;
}

// --- start-up ------------------------------------------------------------------------------------

function setUpRoomView() {
  $('landing').remove();
  $('room').hidden = false;
  const link = `${location.origin}/r/${encodeURIComponent(call.roomId)}`;
  $('room-link').value = link;
  $('room-title').textContent = 'Room';
  document.title = 'XES — room';
  $('display-name').value = load(STORAGE_KEYS.name) ?? '';
  $('relay-only').checked = relayOnly();
  $('relay-only').addEventListener('change', (event) => {
    store(STORAGE_KEYS.relayOnly, String(event.target.checked));
    render();
  });
  $('copy-link').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(link);
      $('copy-status').textContent = 'Link copied.';
    } catch {
      $('room-link').select();
      $('copy-status').textContent = 'Press Ctrl+C (or ⌘C) to copy the selected link.';
    }
  });
  $('join-form').addEventListener('submit', joinRoom);
  $('lobby-cancel').addEventListener('click', onLobbyCancel);
  $('rule-locked').addEventListener('change', (event) => sendRules({ locked: event.target.checked }));
  $('rule-lobby').addEventListener('change', (event) => sendRules({ lobby: event.target.checked }));
  $('password-form').addEventListener('submit', onPasswordSet);
  $('rule-password-clear').addEventListener('click', () => sendRules({ password: null }));
  $('max-form').addEventListener('submit', onMaxSave);
  if (!protocol.ID_PATTERN.test(call.roomId)) {
    showAlert('room', 'This room link is not valid. Ask for the link again, or start a new room.');
  }
}

function setUpLandingView() {
  // The call area is written once, in the room view; while talking to a stranger it lives in
  // the match card.
  const callSection = $('call');
  $('room').remove();
  $('landing').hidden = false;
  $('match').append(callSection);
  $('match-name').value = load(STORAGE_KEYS.name) ?? '';
  $('match-form').addEventListener('submit', startMatch);
  $('allow-direct').checked = allowDirectWithStrangers();
  $('allow-direct').addEventListener('change', (event) => {
    store(STORAGE_KEYS.allowDirect, String(event.target.checked));
    clearAlert('match-refused');
    render();
  });
  $('match-next').addEventListener('click', nextMatch);
  $('match-stop').addEventListener('click', stopMatch);
}

function start() {
  const sinks = element('div', 'sinks');
  sinks.id = 'sinks';
  sinks.setAttribute('aria-hidden', 'true');
  document.body.append(sinks);
  if (route.view === 'room') setUpRoomView();
  else setUpLandingView();
  $('mute').addEventListener('click', onMuteClick);
  setUpTalkButton();
  document.addEventListener('keydown', onKeyDown);
  document.addEventListener('keyup', onKeyUp);
  $('leave').addEventListener('click', onLeaveClick);
  // Wi-Fi to mobile data: the browser goes offline and online again with a new address. The
  // signalling socket belonged to the old address and is dead without knowing it: replace it
  // now, which rejoins the room and makes every link anew (Signalling.renew). Links restart ICE
  // at once too, for when the socket survives (Mesh.networkChanged).
  const onNetworkChange = () => {
    if (call.phase === 'joined') signalling.renew();
    call.mesh?.networkChanged();
  };
  window.addEventListener('online', onNetworkChange);
  // `change` also fires when only the speed estimates move, which is no reason to rejoin: react
  // to a new connection type (wifi to cellular) only.
  let connectionType = navigator.connection?.type;
  navigator.connection?.addEventListener('change', () => {
    if (navigator.connection.type === connectionType) return;
    connectionType = navigator.connection.type;
    onNetworkChange();
  });
  setInterval(updateSpeaking, METER_INTERVAL_MS);
  render();
  // Open the socket now, not on Join: `hello` says whether this server has a relay, which the
  // page must tell before the user picks "Hide my IP" or asks for a stranger.
  signalling.connect();
}

// A read-only window into the call for tests and curious users: no methods that change anything.
window.xes = Object.freeze({
  get me() {
    return call.me ? { ...call.me } : null;
  },
  get phase() {
    return call.phase;
  },
  get signallingState() {
    return signalling.state;
  },
  get iceExpiresAt() {
    return call.iceExpiresAt;
  },
  peers: () => [...call.peers.values()].map((peer) => ({ ...peer })),
  remoteStreams: () => (call.mesh ? call.mesh.remoteStreams() : new Map()),
  pcs: () => (call.mesh ? call.mesh.peerConnections() : new Map()),
  // Per peer id, what goes to the speakers after that person's volume (for tests measuring it).
  heardStreams: () => volumes.heardStreams(),
});

start();
