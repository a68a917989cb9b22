// The view: the only module that touches the DOM. It turns clicks and keys into calls on the
// Call (call.js, which holds the state and its transitions) and draws the page on every `change`.
//
// The page has two views: the landing page at `/` (new room, talk to a stranger) and the room at
// `/r/<id>`. Both end up in the same call: a mesh of direct links plus the participant list.

import * as protocol from './protocol.js';
import { Signalling, signallingUrl } from './signalling.js';
import { Call, Phase } from './call.js';
import {
  LevelMeters, PROCESSING_DEFAULTS, RemoteVolumes, VOLUME_DEFAULT, VOLUME_MAX, VOLUME_MIN, clampVolume,
  openMicrophone, stopStream,
} from './media.js';
import { RELAYED } from './stats.js';
import { describeNumbers } from './quality.js';
import { identifyMessage } from './identity.js';
import { REPORT_REASONS } from './safety.js';

const STORAGE_KEYS = Object.freeze({
  name: 'xes.name',
  relayOnly: 'xes.relayOnly',
  allowDirect: 'xes.allowDirectWithStrangers',
  // "Text only" and "Accept text chats" for strangers (docs/protocol.md, "Text only").
  textOnly: 'xes.textOnly',
  acceptText: 'xes.acceptTextChats',
  // Audio settings, remembered per browser: the chosen devices and the processing toggles.
  microphone: 'xes.microphone',
  speaker: 'xes.speaker',
  processing: 'xes.processing',
});
// Per-person volumes, by display name, in sessionStorage: remembered for this tab's session only.
const VOLUMES_KEY = 'xes.volumes';
// Per room, the secret proving this tab is the host after a server restart: this tab only.
const HOST_KEY_PREFIX = 'xes.hostKey.';
const hostKeys = {
  get(room) {
    try {
      return sessionStorage.getItem(HOST_KEY_PREFIX + room);
    } catch {
      return null; // storage disabled: after a crash the room waits for its host, then moves on
    }
  },
  set(room, key) {
    try {
      sessionStorage.setItem(HOST_KEY_PREFIX + room, key);
    } catch {
      // see get()
    }
  },
};

// A level above this (dBFS RMS) lights the speaking indicator; below it is room noise.
const SPEAKING_DB = -50;
const METER_INTERVAL_MS = 150;

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

// Writes that touch the DOM only when the value differs: a render that changes nothing then costs
// no mutation, no style recalculation and nothing for a screen reader to re-read.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setHidden(node, hidden) {
  if (node.hidden !== hidden) node.hidden = hidden;
}

function setDisabled(node, disabled) {
  if (node.disabled !== disabled) node.disabled = disabled;
}

function setAttribute(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- state ---------------------------------------------------------------------------------------

const route = parseRoute(location.pathname);

function parseRoute(pathname) {
  const roomMatch = /^\/r\/([^/]+)\/?$/.exec(pathname);
  if (roomMatch) return { view: 'room', roomId: decodeURIComponent(roomMatch[1]) };
  return { view: 'landing', roomId: null };
}

/** The processing toggles as remembered (each on unless the user turned it off). */
function processingChoice() {
  try {
    const stored = JSON.parse(load(STORAGE_KEYS.processing) ?? '{}');
    return Object.fromEntries(Object.entries(PROCESSING_DEFAULTS).map(([name, on]) =>
      [name, typeof stored?.[name] === 'boolean' ? stored[name] : on]));
  } catch {
    return { ...PROCESSING_DEFAULTS };
  }
}

/** The microphone the user chose last time (if it is still there) with their processing. */
function microphoneChoice() {
  return { deviceId: load(STORAGE_KEYS.microphone), ...processingChoice() };
}

/** Open the chosen microphone; a remembered device that is gone falls back to the default one. */
async function openChosenMicrophone() {
  const choice = microphoneChoice();
  try {
    return await openMicrophone(choice);
  } catch (error) {
    if (!choice.deviceId || error?.kind !== 'missing') throw error;
    store(STORAGE_KEYS.microphone, '');
    return openMicrophone({ ...choice, deviceId: null });
  }
}

// The browser's identity is proven on every connection before it counts as open (identity.js).
const signalling = new Signalling(signallingUrl(location), { identify: identifyMessage });
const call = new Call({
  signalling,
  roomId: route.roomId,
  hostKeys,
  connectionType: navigator.connection?.type,
  openMicrophone: openChosenMicrophone,
  preferences: {
    relayOnly: load(STORAGE_KEYS.relayOnly) === 'true',
    allowDirect: load(STORAGE_KEYS.allowDirect) === 'true',
  },
});
const meters = new LevelMeters();
const volumes = new RemoteVolumes();

// What only the view remembers: which rules the host's form last showed, whose "Ban" was
// pressed once (a ban cannot be undone, so it asks again), which alerts it last drew.
const view = {
  renderedRules: null,
  confirmingBan: null,
  renderedAlerts: -1,
  // A clone of the microphone track that stays enabled while muted: it feeds our own level
  // meter, so the page can say "You are muted" when the user talks into a muted microphone.
  meterStream: null,
  renderedMessages: 0, // how many chat messages the list shows
  renderedChips: null, // the rules the room's chips show
};

// --- alerts --------------------------------------------------------------------------------------

function renderAlerts() {
  if (view.renderedAlerts === call.alertsVersion) return;
  view.renderedAlerts = call.alertsVersion;
  const container = $('alerts');
  container.replaceChildren();
  for (const [key, text] of call.alerts) {
    const item = element('div', 'alert');
    item.append(element('p', 'alert__text', text));
    const close = element('button', 'alert__close', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Dismiss message');
    close.addEventListener('click', () => call.clearAlert(key));
    item.append(close);
    container.append(item);
  }
}

/** The signalling connection's state, in its own polite live region (index.html). */
function renderConnectionNotice() {
  const notice = $('connection-notice');
  if (notice.textContent === call.connectionNotice) return;
  notice.replaceChildren();
  if (call.connectionNotice) {
    const item = element('div', 'alert alert--info');
    item.append(element('p', 'alert__text', call.connectionNotice));
    notice.append(item);
  }
}

// --- joining and leaving -------------------------------------------------------------------------

/** The display name in `input`, checked; on a bad one the page says why and focuses it. */
function checkedName(input) {
  const checked = protocol.checkName(input.value);
  if (!checked.ok) {
    call.showAlert('name', checked.reason);
    input.focus();
    return null;
  }
  call.clearAlert('name');
  store(STORAGE_KEYS.name, checked.name);
  return checked.name;
}

async function joinRoom(event) {
  event.preventDefault();
  if (call.phase !== Phase.IDLE) return;
  const name = checkedName($('display-name'));
  if (name !== null) await call.join(name, $('room-password').value);
}

function onLeaveClick() {
  call.leave();
  renderNow(); // the join form shows again, and only a shown element takes focus
  (route.view === 'room' ? $('join') : $('match-start')).focus();
}

/** In the call at last: keyboard focus and the screen (a phone's too) go to it, not to the body. */
function onEntered() {
  const focusCall = () => {
    if (!call.inCall) return;
    $('call-title').focus({ preventScroll: true }); // shown by the last render: it can take focus
    $('call').scrollIntoView({ block: 'start', behavior: 'auto' });
  };
  // Moving focus forces a style and layout pass. With nobody to connect to, at the next render;
  // otherwise once the first voice arrives, a fraction of a second later: the links' set-up
  // would wait behind that pass (bench/join_profile.py measured it on the first word heard).
  if (call.peers.size === 0) afterNextRender(focusCall);
  else whenSettled(() => afterNextRender(focusCall));
}

// Work that can wait until the call is up: it runs when the first link settles (its voice
// arrives: negotiation.js, SETTLE_FALLBACK_MS) or after SETTLED_FALLBACK_MS, whichever is first.
// The page's other work at join (meters, focus) would otherwise compete for the cores with
// WebRTC's threads while they bring the links up.
const SETTLED_FALLBACK_MS = 1500;
const settledWork = { steps: [], timer: null };

function whenSettled(step) {
  settledWork.steps.push(step);
  if (settledWork.timer === null) settledWork.timer = setTimeout(runSettledWork, SETTLED_FALLBACK_MS);
}

function runSettledWork() {
  clearTimeout(settledWork.timer);
  settledWork.timer = null;
  for (const step of settledWork.steps.splice(0)) step();
}

/** Sentences kept in the live region: screen readers read each addition once. */
const ANNOUNCEMENTS_KEPT = 5;
/** How long a sentence stays in the live region after it was read out. */
const ANNOUNCEMENT_LIFETIME_MS = 5000;

/**
 * A sentence for screen readers, said politely: added to the live region (which reads additions
 * only), so two news items in quick succession are both heard, and a repeat is heard again.
 */
function announce(text) {
  const region = $('announcer');
  const sentence = element('p', '', text);
  region.append(sentence);
  while (region.children.length > ANNOUNCEMENTS_KEPT) region.firstElementChild.remove();
  // Said once is enough: stale news would otherwise sit in the page (and in find-in-page) twice,
  // once where it is shown and once here.
  setTimeout(() => sentence.remove(), ANNOUNCEMENT_LIFETIME_MS);
}

/** Leave the lobby before the host answers. */
function onLobbyCancel() {
  call.cancelLobby();
  renderNow();
  $('join').focus();
}

// --- host controls ---------------------------------------------------------------------------------

function onPasswordSet(event) {
  event.preventDefault();
  const input = $('rule-password');
  if (input.value.length === 0) {
    call.showAlert('rules', 'Type a password first, then press “Set password”.');
    input.focus();
    return;
  }
  call.clearAlert('rules');
  call.setRules({ password: input.value.slice(0, protocol.PASSWORD_MAX_LENGTH) });
  input.value = ''; // the host already knows it; do not leave it sitting in the page
}

function onMaxSave(event) {
  event.preventDefault();
  const input = $('rule-max');
  const ceiling = call.maxCeiling ?? protocol.MIN_MAX_PEERS;
  const value = Number(input.value);
  if (!Number.isInteger(value) || value < protocol.MIN_MAX_PEERS || value > ceiling) {
    call.showAlert('rules', `“Maximum people” must be a whole number from ${protocol.MIN_MAX_PEERS} to ${ceiling}.`);
    input.focus();
    return;
  }
  call.clearAlert('rules');
  call.setRules({ max_peers: value });
}

/** Remove or ban a member (`kind` is 'remove' or 'ban'). */
function moderate(kind, peerId) {
  view.confirmingBan = null;
  call.moderate(kind, peerId);
}

/** First press of "Ban": ask again, since there is no unban for the life of the room. */
function askToBan(peerId, confirming) {
  view.confirmingBan = confirming ? peerId : null;
  renderNow();
  const item = document.querySelector(`#participants li[data-peer="${CSS.escape(peerId)}"]`);
  const target = item && item.querySelector(confirming ? '[data-action="confirm-ban"]' : '[data-action="ban"]');
  if (target) target.focus(); // the pressed button was replaced: keep keyboard users in place
}

// --- talking controls ------------------------------------------------------------------------------

/** Typing a name, a password or a number must not mute the call or open the microphone. */
function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || target.matches('input, textarea, select');
}

function onKeyDown(event) {
  if (call.phase !== 'joined' || event.ctrlKey || event.metaKey || event.altKey) return;
  if (call.textChat) return; // no audio goes over a text chat: nothing to mute or hold open
  if (isTyping(event.target)) return;
  if (event.code === 'Space' && event.target !== $('talk')) { // the button handles its own keys
    event.preventDefault(); // Space would also press the focused button (e.g. Leave)
    if (!event.repeat) call.holdToTalk('space', true);
  } else if (event.code === 'KeyM' && !event.repeat) {
    event.preventDefault();
    call.toggleMute();
  }
}

function onKeyUp(event) {
  if (event.code !== 'Space' || !call.talkHeld.has('space')) return;
  event.preventDefault();
  call.holdToTalk('space', false);
}

function setUpTalkButton() {
  const button = $('talk');
  button.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    button.setPointerCapture(event.pointerId); // the release counts even off the button
    call.holdToTalk('button', true);
  });
  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
    button.addEventListener(type, () => call.holdToTalk('button', false));
  }
  button.addEventListener('keydown', (event) => {
    if (event.code !== 'Space' && event.code !== 'Enter') return;
    event.preventDefault();
    if (!event.repeat) call.holdToTalk('button', true);
  });
  button.addEventListener('keyup', (event) => {
    if (event.code !== 'Space' && event.code !== 'Enter') return;
    event.preventDefault();
    call.holdToTalk('button', false);
  });
  button.addEventListener('blur', () => call.holdToTalk('button', false));
  button.addEventListener('contextmenu', (event) => event.preventDefault()); // long press on touch
  // A key released in another window never reaches us: losing focus ends every hold.
  window.addEventListener('blur', () => {
    call.holdToTalk('space', false);
    call.holdToTalk('button', false);
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

// --- remote audio --------------------------------------------------------------------------------

/**
 * Play a remote stream from its own <audio> element, at the volume this listener chose for that
 * person (RemoteVolumes decides whether the element plays it or, muted, feeds Web Audio).
 */
function attachRemoteStream(peerId, stream) {
  let sink = document.querySelector(`audio[data-peer="${CSS.escape(peerId)}"]`);
  if (!sink) {
    sink = document.createElement('audio');
    sink.autoplay = true;
    sink.dataset.peer = peerId;
    $('sinks').append(sink);
  }
  if (sink.srcObject !== stream) sink.srcObject = stream;
  const peer = call.peers.get(peerId);
  // Volume and mute are set before play(): an element unmuted after it started without the
  // user's gesture would be paused by the autoplay policy.
  volumes.attach(peerId, stream, sink, peer ? volumeFor(peer.name) : VOLUME_DEFAULT).catch(speakerFailed);
  sink.play().catch(blockedPlayback);
  // Without a user gesture the autoplay policy keeps the elements paused and the AudioContext
  // suspended: say so.
  setTimeout(() => {
    if (volumes.suspended()) blockedPlayback();
  }, 1000);
}

function removeRemoteStream(peerId) {
  const sink = document.querySelector(`audio[data-peer="${CSS.escape(peerId)}"]`);
  if (sink) sink.remove();
  volumes.detach(peerId);
}

function blockedPlayback() {
  call.showAlert('autoplay', 'Your browser blocked audio playback. Click anywhere on the page to hear the call.');
  document.addEventListener('click', resumePlayback, { once: true });
}

/** A click is the user gesture autoplay wants: start every sink that is paused, and the audio. */
function resumePlayback() {
  for (const sink of document.querySelectorAll('audio[data-peer]')) sink.play().catch(() => {});
  meters.audioContext();
  if (volumes.context !== null) volumes.audioContext();
  call.clearAlert('autoplay');
}

// --- the call's events -----------------------------------------------------------------------------

call.addEventListener('change', requestRender);
call.addEventListener('track', ({ detail }) => attachRemoteStream(detail.peerId, detail.stream));
call.addEventListener('linkremoved', ({ detail }) => removeRemoteStream(detail.peerId));
call.addEventListener('microphone', ({ detail: stream }) => {
  meters.detach('self');
  stopStream(view.meterStream);
  view.meterStream = null;
  if (stream === null) return;
  const meterStream = new MediaStream(stream.getAudioTracks().map((track) => track.clone()));
  view.meterStream = meterStream;
  // The meters' AudioContext, made at load (warmUp) and resumed now, still within the click's
  // activation: made while the join waits for its answer, its constructor would hold the main
  // thread then.
  meters.audioContext();
  // The meter itself once the call is up: nobody needs it to join.
  whenSettled(() => {
    if (view.meterStream === meterStream) meters.attach('self', meterStream);
  });
});
call.addEventListener('linksettled', runSettledWork);
call.addEventListener('teardown', () => {
  for (const sink of document.querySelectorAll('audio[data-peer]')) sink.remove();
  for (const key of [...volumes.voices.keys()]) volumes.detach(key);
  view.renderedRules = null;
  view.confirmingBan = null;
});
call.addEventListener('passwordrequired', () => {
  renderNow(); // the field is enabled and shown now: a disabled or hidden input cannot take focus
  $('room-password').focus();
});
call.addEventListener('entered', onEntered);
call.addEventListener('announce', ({ detail }) => announce(detail));
call.addEventListener('directconsentrequired', () => {
  renderNow();
  $('allow-direct').focus();
});

signalling.addEventListener('protocolerror', ({ detail }) => {
  console.warn('XES: ignored a malformed server message:', detail.message);
});

window.addEventListener('pagehide', () => call.pageHidden());
// Wi-Fi to mobile data: the browser goes offline and online again with a new address, or (where
// the Network Information API exists) its connection type changes. Call.networkChanged resumes
// the session on a new socket and restarts ICE on every link.
window.addEventListener('online', () => call.networkChanged());
navigator.connection?.addEventListener('change', () => call.networkChanged(navigator.connection.type));

// --- matchmaking (landing page) ------------------------------------------------------------------

async function startMatch(event) {
  event.preventDefault();
  if (call.phase !== Phase.IDLE) return;
  const name = checkedName($('match-name'));
  if (name === null) return;
  await call.findStranger(name, {
    tags: protocol.parseTags($('match-tags').value),
    language: $('match-language').value.trim().slice(0, 32),
    textOnly: $('text-only').checked,
    acceptText: $('accept-text').checked,
  });
}

// --- rendering -----------------------------------------------------------------------------------

// The call says `change` for every message, stats poll, safety-code step and chat line, often
// several in one task (joining a room is a dozen). The page draws at most once per animation
// frame, after all of them; a tab in the background gets no frames, so a timer draws it there.
// What must be on screen before the next line (focus moves to a control a render shows or
// enables) calls renderNow().
const RENDER_FALLBACK_MS = 100;
/** The redraw waits at most this long for a join's offers and answers (`requestRender`). */
const JOIN_SIGNALS_FIRST_MAX_MS = 100;
const renderRequest = { frame: null, timer: null, then: [] };

/** Run `step` right after the next render (and ask for one). */
function afterNextRender(step) {
  renderRequest.then.push(step);
  requestRender();
}

function requestRender() {
  if (renderRequest.timer !== null) return;
  if (call.joinSignalsPending) {
    // A join: its offers and answers go first. Each waits for WebRTC's signalling thread to
    // make it and then for this page's main thread to send it, and an offer or answer arriving
    // waits for the main thread to read it; a redraw of the whole call view in between (the
    // next frame) made them leave or be read 10-30 ms later (bench/browser_bench.py's
    // timeline), on the newcomer's page (joined, its offer, the member's answer) and on each
    // member's (peer-joined, then the newcomer's offer, then the member's first candidate).
    renderRequest.timer = setTimeout(renderNow, JOIN_SIGNALS_FIRST_MAX_MS);
    return;
  }
  renderRequest.frame = requestAnimationFrame(renderNow);
  renderRequest.timer = setTimeout(renderNow, RENDER_FALLBACK_MS);
}

call.addEventListener('firstsignalsout', () => {
  if (renderRequest.timer === null || renderRequest.frame !== null) return;
  clearTimeout(renderRequest.timer); // the redraw that waited for the signals: at the next frame
  renderRequest.timer = null;
  requestRender();
});

function renderNow() {
  if (renderRequest.timer !== null) {
    cancelAnimationFrame(renderRequest.frame);
    clearTimeout(renderRequest.timer);
    renderRequest.frame = null;
    renderRequest.timer = null;
  }
  render();
  for (const step of renderRequest.then.splice(0)) step();
}

function render() {
  const inCall = call.inCall;
  renderConnectionNotice();
  setHidden($('call'), !inCall);
  setAttribute($('mute'), 'aria-pressed', String(call.muted));
  setText($('mute'), call.muted ? 'Unmute' : 'Mute');
  $('mute').classList.toggle('is-active', call.muted);
  // Held while unmuted changes nothing, so only a held-open muted microphone lights up (the
  // name stays "Hold to talk": it is a momentary button, not a toggle).
  const talking = call.muted && call.talkHeld.size > 0;
  $('talk').classList.toggle('is-active', talking);
  // A text chat carries no audio: no microphone controls, and the page says what it is instead.
  const textChat = call.textChat;
  for (const id of ['mute', 'talk', 'talk-hint', 'muted-notice', 'audio-settings']) setHidden($(id), textChat);
  setHidden($('text-chat-note'), !textChat);

  // A stranger call has Next and Stop; a "Leave" beside them would only be a second Stop.
  setHidden($('leave'), call.isMatch);

  if (route.view === 'room') renderRoomView(inCall);
  else renderLandingView(inCall);
  renderChat();

  renderAlerts();
  renderRules();
  renderParticipants();
  renderKnocks();
  renderSettings();
  renderVerification();
}

function renderRoomView(inCall) {
  const validRoom = protocol.ID_PATTERN.test(call.roomId ?? '');
  setHidden($('share'), !validRoom);
  setHidden($('bad-room'), validRoom);
  setHidden($('join-form'), inCall);
  setDisabled($('join'), call.phase !== 'idle' || !validRoom);
  setText($('join'), call.phase === 'joining' ? 'Joining…' : 'Join');
  setHidden($('join'), call.phase === 'lobby');
  setHidden($('lobby-cancel'), call.phase !== 'lobby');
  setHidden($('lobby-note'), call.phase !== 'lobby');
  setHidden($('password-field'), !call.passwordNeeded);
  setDisabled($('display-name'), call.phase !== 'idle');
  setDisabled($('room-password'), call.phase !== 'idle');
  const noRelay = call.serverRelay === false;
  setDisabled($('relay-only'), call.phase !== 'idle' || noRelay);
  $('relay-only').checked = call.relayOnly;
  setText($('relay-hint'), noRelay ? RELAY_HINT_NO_RELAY : RELAY_HINT);
  const others = `${call.peers.size} other${call.peers.size === 1 ? '' : 's'}`;
  const states = {
    idle: 'Not joined yet.',
    joining: 'Joining…',
    lobby: 'Waiting for the host to let you in…',
    joined: call.isHost
      ? `You are in the call with ${others}. You are the host.`
      : `You are in the call with ${others}.`,
  };
  setText($('room-state'), states[call.phase] ?? '');
}

/** While queued: who we look for, and that the wait widens to anyone (docs/protocol.md). */
function queuedWords() {
  const tags = protocol.parseTags($('match-tags').value);
  const language = $('match-language').value.trim();
  if (tags.length === 0 && !language) {
    return call.textOnly ? 'Looking for someone to chat with in text…' : 'Looking for someone to talk to…';
  }
  const wants = [tags.length > 0 ? `likes ${tags.join(' or ')}` : '', language ? `speaks “${language}”` : '']
    .filter(Boolean).join(' or ');
  const chat = call.textOnly ? ', for a text chat' : '';
  return `Looking for someone who ${wants}${chat}… If nobody does within a few seconds, anyone.`;
}

/** In a stranger call: whether it is a text chat, and whether the relay hides our address. */
function strangerCallWords() {
  const relayed = [...call.peers.values()].some((peer) => peer.link === RELAYED);
  // With direct allowed, our own candidates (our IP) went to the stranger even if the link
  // ended up relayed, so only claim privacy when we kept to the relay.
  const hidden = relayed && call.configuration().iceTransportPolicy === 'relay';
  const route = hidden ? ' through the encrypted relay: they do not see your IP address.'
    : relayed ? ' through the encrypted relay.' : '.';
  if (!call.textChat) return `Connected with a stranger${route}`;
  const stranger = [...call.peers.values()][0];
  const why = call.textOnly ? 'You chose text only, so no audio goes either way.'
    : `${stranger.name} has no microphone, so your microphone is not sent.`;
  return `Text chat with a stranger${route} ${why}`;
}

function renderLandingView(inCall) {
  const words = {
    idle: '',
    joining: 'Connecting…',
    queued: queuedWords(),
    joined: 'Connected with a stranger.',
  };
  let status = words[call.phase] ?? '';
  // Without a relay, asking for a stranger is consenting to show them your address: the button
  // waits for that consent, and the page says why before anything is queued.
  const noRelay = call.serverRelay === false;
  setHidden($('match-no-relay'), !noRelay);
  setText($('allow-direct-hint'), noRelay ? ALLOW_DIRECT_HINT_NO_RELAY : ALLOW_DIRECT_HINT);
  setDisabled($('match-start'), call.phase !== 'idle' || (noRelay && !call.preferences.allowDirect));
  // Sent with `match`, so it may change until then, not while queued or in a call.
  setDisabled($('allow-direct'), call.phase !== 'idle');
  setDisabled($('text-only'), call.phase !== 'idle');
  // A text-only user meets text chats anyway: the choice only means something with a microphone.
  setDisabled($('accept-text'), call.phase !== 'idle' || $('text-only').checked);
  setDisabled($('match-next'), !inCall);
  setDisabled($('match-stop'), call.phase === 'idle');
  renderStrangerFeedback();
  if (inCall && call.isMatch && call.peers.size === 0) {
    status = 'The other person left. Press Next to meet someone new, or Stop.';
  } else if (inCall && call.isMatch) {
    status = strangerCallWords();
  }
  // Written once per render: the status is a polite live region, which reads every change.
  setText($('match-status'), status);
}

function renderRules() {
  const list = $('room-rules');
  const rules = call.phase === 'joined' && !call.isMatch ? call.rules : null;
  // The chips follow the rules object, which the call replaces whenever the server sends new ones.
  if (view.renderedChips === rules && list.hidden === !rules) return;
  view.renderedChips = rules;
  if (!rules) {
    list.replaceChildren();
    list.hidden = true;
    return;
  }
  list.hidden = false;
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
      meta: [call.textChat ? (call.textOnly ? 'Text only' : 'Microphone not sent')
        : call.muted ? (call.talkHeld.size > 0 ? 'Muted, talking while held' : 'Muted') : 'Microphone on'],
    });
  }
  for (const peer of call.peers.values()) {
    // Past the bound (or after a failed restart) the list says why, instead of "Connecting…".
    const meta = [peer.linkFailure && peer.connectionState !== 'connected'
      ? `Could not connect: ${peer.linkFailure}`
      : CONNECTION_WORDS[peer.connectionState] ?? peer.connectionState];
    if (peer.link) meta.push(peer.link);
    if (peer.muted === true) meta.push('Muted');
    if (peer.textOnly) meta.push('Text only');
    entries.push({
      key: peer.id, id: peer.id, name: peer.name, self: false, meta, link: peer.link, quality: peer.quality,
    });
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
  // The ring is for eyes; the words beside it are for screen readers (updated with the ring).
  const speakingText = element('span', 'participant__speaking-text visually-hidden', '');
  title.append(speakingText);
  const warning = element('p', 'participant__warning');
  warning.hidden = true;
  body.append(warning);
  const speaking = element('span', 'participant__speaking');
  speaking.setAttribute('aria-hidden', 'true');
  speaking.title = 'Speaking';
  item.append(avatar, body, speaking);
  if (key !== 'self') {
    const quality = element('details', 'participant__quality');
    const summary = element('summary', '', 'Connection details');
    quality.append(summary, element('p', 'participant__numbers'));
    body.append(quality);
    item.append(volumeControl(key));
  }
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

function updateParticipantItem(item, { id, name, self, meta, link, quality }) {
  item.classList.toggle('is-muted', self ? call.muted : meta.includes('Muted'));
  if (quality) {
    const warning = item.querySelector('.participant__warning');
    setText(warning, quality.poor ? `Poor connection: ${quality.poor}.` : '');
    setHidden(warning, !quality.poor);
    setAttribute(item.querySelector('.participant__quality summary'), 'aria-label', `Connection details for ${name}`);
    setText(item.querySelector('.participant__numbers'), describeNumbers(quality));
  }
  setText(item.querySelector('.participant__avatar'), [...name][0]?.toUpperCase() ?? '?');
  setText(item.querySelector('.participant__label'), name);
  // Nobody's sound comes over a text chat: no volume to set.
  const volume = item.querySelector('.participant__volume');
  if (volume) setHidden(volume, call.textChat);
  const volumeLabel = item.querySelector('.participant__volume-label');
  if (volumeLabel) setText(volumeLabel, `Volume for ${name}`);
  const badges = [];
  if (self) badges.push(element('span', 'badge', 'you'));
  if (id && id === call.hostId && !call.isMatch) badges.push(element('span', 'badge badge--host', 'host'));
  const badgeList = item.querySelector('.participant__badges');
  if (badgeList.textContent !== badges.map((badge) => badge.textContent).join('')) badgeList.replaceChildren(...badges);
  // The words decide the parts: the link's kind (its colour) is one of them.
  const details = item.querySelector('.participant__meta');
  if (details.textContent !== meta.join(' · ')) {
    details.replaceChildren();
    meta.forEach((text, index) => {
      if (index > 0) details.append(element('span', 'sep', ' · '));
      const part = element('span', text === link ? `link link--${link === RELAYED ? 'relay' : 'direct'}` : '', text);
      details.append(part);
    });
  }
  const actions = item.querySelector('.participant__actions');
  for (const button of actions.querySelectorAll('button')) setDisabled(button, !call.serverReachable);
  if (self || !call.isHost) {
    if (actions.firstChild) actions.replaceChildren();
    setHidden(actions, true);
    delete actions.dataset.mode;
    return;
  }
  setHidden(actions, false);
  const mode = view.confirmingBan === id ? 'confirm' : 'normal';
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
    setAttribute(button, 'aria-label', labels[button.dataset.action]);
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
  const show = call.isHost && call.knocks.size > 0;
  setHidden(section, !show);
  if (!show) {
    if (list.firstChild) list.replaceChildren();
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
      const admit = actionButton('Admit', 'button button--small button--primary', () => call.answerKnock(id, true));
      const decline = actionButton('Decline', 'button button--small', () => call.answerKnock(id, false));
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
  setHidden(section, !call.isHost);
  const offline = !call.serverReachable;
  setHidden($('settings-offline'), !offline);
  for (const control of section.querySelectorAll('input, button')) {
    setDisabled(control, offline || (control.id === 'rule-password-clear' && !call.rules?.password));
  }
  for (const button of $('knockers').querySelectorAll('button')) setDisabled(button, offline);
  if (section.hidden || view.renderedRules === call.rules) return;
  const rules = call.rules;
  view.renderedRules = rules;
  $('rule-locked').checked = rules.locked;
  $('rule-lobby').checked = rules.lobby;
  $('rule-password-clear').disabled = !rules.password || !call.serverReachable;
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

// A voice's last level from the statistics is stale after this (they are read every second,
// and every 5 s while another link is being set up).
const PLAYED_LEVEL_STALE_MS = 6000;

/** How loud a remote voice arrives, in dB, whatever this listener's volume for it. */
function remoteLevel(peerId) {
  const played = call.peers.get(peerId)?.played;
  const fresh = played !== undefined && performance.now() - played.at <= PLAYED_LEVEL_STALE_MS;
  return volumes.level(peerId, fresh ? played.db : -Infinity);
}

function updateSpeaking() {
  const silenced = call.silenced;
  for (const item of document.querySelectorAll('#participants li[data-peer]')) {
    const key = item.dataset.peer;
    // In a text chat our microphone is not sent: a ring on it would say otherwise.
    const speaking = key === 'self' ? !(silenced || call.textChat) && meters.level(key) > SPEAKING_DB
      : remoteLevel(key) > SPEAKING_DB;
    item.classList.toggle('is-speaking', speaking);
    const words = item.querySelector('.participant__speaking-text');
    const text = speaking ? ', speaking' : '';
    if (words.textContent !== text) words.textContent = text;
  }
  // Talking into a muted microphone: the meter listens to a clone that mute leaves on.
  const unheard = call.phase === 'joined' && !call.textChat && silenced && meters.level('self') > SPEAKING_DB;
  const notice = $('muted-notice');
  const text = unheard ? 'You are muted' : '';
  if (notice.textContent !== text) notice.textContent = text;
}

// --- chat ----------------------------------------------------------------------------------------

function onChatSubmit(event) {
  event.preventDefault();
  const input = $('chat-message');
  const result = call.sendChat(input.value);
  if (!result.ok) {
    call.showAlert('chat', result.reason);
    input.focus();
    return;
  }
  call.clearAlert('chat');
  input.value = '';
  input.focus();
}

const TIME_FORMAT = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

/** Append the messages the list does not show yet (the list is rebuilt only when a call ends). */
function renderChat() {
  const list = $('messages');
  if (call.messages.length < view.renderedMessages || !call.inCall) {
    list.replaceChildren();
    view.renderedMessages = 0;
  }
  const fresh = call.messages.slice(view.renderedMessages);
  view.renderedMessages = call.messages.length;
  for (const message of fresh) {
    const item = element('li', message.self ? 'chat__message chat__message--self' : 'chat__message');
    const head = element('p', 'chat__head');
    const time = element('time', 'chat__time', TIME_FORMAT.format(message.at));
    time.dateTime = new Date(message.at).toISOString();
    head.append(element('span', 'chat__name', message.self ? `${message.name} (you)` : message.name), ' ', time);
    item.append(head, element('p', 'chat__text', message.text));
    list.append(item);
  }
  while (list.children.length > call.messages.length) list.firstElementChild.remove();
  if (fresh.length > 0) list.scrollTop = list.scrollHeight;
}

// --- audio settings --------------------------------------------------------------------------------

const PROCESSING_TOGGLES = Object.freeze({
  'echo-cancellation': 'echoCancellation',
  'noise-suppression': 'noiseSuppression',
  'auto-gain': 'autoGainControl',
});

function setUpAudioSettings() {
  const processing = processingChoice();
  for (const [id, name] of Object.entries(PROCESSING_TOGGLES)) {
    $(id).checked = processing[name];
    $(id).addEventListener('change', async () => {
      store(STORAGE_KEYS.processing, JSON.stringify({ ...processingChoice(), [name]: $(id).checked }));
      if (call.localStream) await call.switchMicrophone(() => openMicrophone(microphoneChoice()));
    });
  }
  $('microphone').addEventListener('change', async () => {
    store(STORAGE_KEYS.microphone, $('microphone').value);
    if (call.localStream) await call.switchMicrophone(() => openMicrophone(microphoneChoice()));
    await listDevices();
  });
  $('speaker').addEventListener('change', () => {
    store(STORAGE_KEYS.speaker, $('speaker').value);
    applySpeaker();
  });
  navigator.mediaDevices?.addEventListener?.('devicechange', listDevices);
  // The names come with the microphone's permission; on a join that is the moment the join
  // message is to leave, so they are read once the call is up (2-3 ms off its path).
  call.addEventListener('microphone', () => whenSettled(listDevices));
  listDevices();
  applySpeaker();
}

/** Whether this browser can send the call's sound to a chosen output (the elements' setSinkId). */
function canChooseSpeaker() {
  return typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
}

/** Fill the two selects; names are only given once the microphone is allowed, so ask again then. */
async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const live = call.localStream?.getAudioTracks()[0]?.getSettings?.().deviceId || null;
  fillSelect($('microphone'), devices.filter((device) => device.kind === 'audioinput'),
    [live, load(STORAGE_KEYS.microphone)], 'Microphone');
  const speakers = devices.filter((device) => device.kind === 'audiooutput');
  const speakerSelect = $('speaker');
  if (canChooseSpeaker()) {
    fillSelect(speakerSelect, speakers, [load(STORAGE_KEYS.speaker)], 'Speaker');
    speakerSelect.disabled = false;
    $('speaker-note').textContent = speakers.length <= 1 ? 'Only one speaker was found.' : '';
  } else {
    fillSelect(speakerSelect, [], [], 'Speaker');
    speakerSelect.disabled = true;
    $('speaker-note').textContent = 'This browser cannot choose where the call plays: it uses the ' +
      'system’s default output. Change it in your system’s sound settings.';
  }
}

/** Options for `devices`; selected: the first of `wanted` that is one of them, else the first. */
function fillSelect(select, devices, wanted, kind) {
  const options = devices.length > 0
    ? devices.map((device, index) => {
      const option = element('option', '', device.label || `${kind} ${index + 1}`);
      option.value = device.deviceId;
      return option;
    })
    : [Object.assign(element('option', '', 'Default'), { value: '' })];
  const same = options.length === select.options.length &&
    options.every((option, i) => select.options[i].value === option.value && select.options[i].text === option.text);
  if (!same) select.replaceChildren(...options);
  const values = [...select.options].map((option) => option.value);
  select.value = wanted.find((value) => value && values.includes(value)) ?? values[0];
}

/**
 * Send the call's sound to the chosen output, where the browser can: every voice's element, and
 * the AudioContext that plays the voices above 100 %. At start-up nothing plays yet: RemoteVolumes
 * remembers the choice and gives it to each voice as it comes.
 */
function applySpeaker() {
  const chosen = load(STORAGE_KEYS.speaker);
  if (!canChooseSpeaker() || !chosen) return;
  volumes.setSpeaker(chosen === 'default' ? '' : chosen).catch(speakerFailed);
}

function speakerFailed(error) {
  call.showAlert('speaker', `That speaker could not be used (${error.message}). The call plays on the default one.`);
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
  $('relay-only').addEventListener('change', (event) => {
    store(STORAGE_KEYS.relayOnly, String(event.target.checked));
    call.preferences.relayOnly = event.target.checked;
    requestRender();
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
  $('rule-locked').addEventListener('change', (event) => call.setRules({ locked: event.target.checked }));
  $('rule-lobby').addEventListener('change', (event) => call.setRules({ lobby: event.target.checked }));
  $('password-form').addEventListener('submit', onPasswordSet);
  $('rule-password-clear').addEventListener('click', () => call.setRules({ password: null }));
  $('max-form').addEventListener('submit', onMaxSave);
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
  $('allow-direct').checked = call.preferences.allowDirect;
  $('allow-direct').addEventListener('change', (event) => {
    store(STORAGE_KEYS.allowDirect, String(event.target.checked));
    call.preferences.allowDirect = event.target.checked;
    call.clearAlert('match-refused');
    requestRender();
  });
  for (const [id, key] of [['text-only', STORAGE_KEYS.textOnly], ['accept-text', STORAGE_KEYS.acceptText]]) {
    $(id).checked = load(key) === 'true';
    $(id).addEventListener('change', (event) => {
      store(key, String(event.target.checked));
      requestRender();
    });
  }
  $('match-next').addEventListener('click', () => call.next());
  $('match-stop').addEventListener('click', () => call.stop());
  wireStrangerFeedback();
}

// --- after a call with a stranger: Good call, Bad call, Block, Report (state in call.js) ----------

function wireStrangerFeedback() {
  $('rate-good').addEventListener('click', () => call.rateStranger(true));
  $('rate-bad').addEventListener('click', () => call.rateStranger(false));
  $('block-stranger').addEventListener('click', () => call.blockStranger());
  $('report-open').addEventListener('click', () => call.toggleReporting());
  for (const [reason, words] of Object.entries(REPORT_REASONS)) {
    const button = element('button', 'button', words);
    button.type = 'button';
    button.addEventListener('click', () => call.reportStranger(reason, $('report-text').value.trim()));
    $('report-reasons').append(button);
  }
}

function renderStrangerFeedback() {
  const feedback = call.feedback;
  setHidden($('stranger-feedback'), !feedback);
  if (!feedback) return;
  setText($('feedback-name'), feedback.stranger.name);
  setDisabled($('rate-good'), feedback.rated);
  setDisabled($('rate-bad'), feedback.rated);
  setDisabled($('block-stranger'), feedback.blocked);
  setDisabled($('report-open'), feedback.reported);
  setAttribute($('report-open'), 'aria-expanded', String(feedback.reporting));
  setHidden($('report-panel'), !feedback.reporting);
  setText($('feedback-status'), feedback.said);
}

// --- safety codes (the state is call.verification, verify.js) ------------------------------------

const verifyView = { open: false, linkCodesOpen: false }; // "Verify" and "Show each link's code"

function setUpVerify() {
  $('verify').addEventListener('click', () => {
    verifyView.open = !verifyView.open;
    renderVerification();
  });
  $('verify-links').addEventListener('click', () => {
    verifyView.linkCodesOpen = !verifyView.linkCodesOpen;
    renderVerification();
  });
}

function renderVerification() {
  const open = verifyView.open && call.inCall;
  setAttribute($('verify'), 'aria-expanded', String(open));
  $('verify').classList.toggle('is-active', open);
  setHidden($('verify-panel'), !open);
  if (!open) return;
  const summary = call.verification ? call.verification.summary() : null;
  let roomText = summary?.words ? summary.words.join(' ')
    : call.peers.size === 0 ? 'Nobody else is here yet.' : 'Checking the links…';
  if (summary?.contradictions.length) roomText += ' (mismatch found: see the warning)';
  setText($('room-code'), roomText);
  setAttribute($('verify-links'), 'aria-expanded', String(verifyView.linkCodesOpen));
  setText($('verify-links'), verifyView.linkCodesOpen ? "Hide each link's code" : "Show each link's code");
  const list = $('link-codes');
  setHidden(list, !verifyView.linkCodesOpen);
  const items = [...call.peers.values()].map((peer) => {
    const link = summary?.links.get(peer.id);
    const text = link?.state === 'verified' ? link.words.join(' ')
      : link?.state === 'broken' ? `check failed: ${link.problem}` : 'checking…';
    const item = element('li', '', `With ${peer.name}: `);
    item.dataset.peer = peer.id;
    item.append(element('strong', 'verify__link-code', text));
    return item;
  });
  const same = items.length === list.children.length &&
    items.every((item, i) => list.children[i].textContent === item.textContent);
  if (!same) list.replaceChildren(...items);
}

function start() {
  const sinks = element('div', 'sinks');
  sinks.id = 'sinks';
  sinks.setAttribute('aria-hidden', 'true');
  document.body.append(sinks);
  if (route.view === 'room') setUpRoomView();
  else setUpLandingView();
  $('mute').addEventListener('click', () => call.toggleMute());
  setUpTalkButton();
  document.addEventListener('keydown', onKeyDown);
  document.addEventListener('keyup', onKeyUp);
  $('leave').addEventListener('click', onLeaveClick);
  $('chat-form').addEventListener('submit', onChatSubmit);
  setUpAudioSettings();
  setUpVerify();
  setInterval(updateSpeaking, METER_INTERVAL_MS);
  renderNow();
  // Open the socket now, not on Join: `hello` says whether this server has a relay, which the
  // page must tell before the user picks "Hide my IP" or asks for a stranger.
  call.connect();
  setTimeout(warmUp, WARM_UP_DELAY_MS);
}

// Soon after the page has loaded, while the user reads it.
const WARM_UP_DELAY_MS = 200;

/**
 * Do now, while the page waits for the user, the one-time set-up the browser would otherwise do
 * on the join's path: this tab's session storage is loaded on its first read (a synchronous
 * round trip to the browser process), and the first RTCPeerConnection starts WebRTC's threads
 * and factory (bench/join_profile.py: ~10 ms each on the main thread, right when `joined` is
 * to become offers). The connection made here is closed at once: it gathers nothing and sends
 * nothing, so no address is revealed to anyone. The AudioContext is made here too, suspended
 * (LevelMeters#prepare), and resumed by the join.
 */
function warmUp() {
  // Clicked already (a quick user, a script): the join is making the real connection, and
  // this one would only hold the main thread on its path (10 ms in bench/join_profile.py).
  if (call.phase !== 'idle') return;
  try {
    sessionStorage.getItem(VOLUMES_KEY);
  } catch {
    // storage disabled: nothing to warm
  }
  try {
    meters.prepare();
  } catch {
    // no Web Audio: the first voice says so when it cannot play
  }
  try {
    new RTCPeerConnection().close();
  } catch {
    // WebRTC unavailable: the join says so in words
  }
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
  // The local microphone stream (for tests checking a device switch keeps the link).
  localStream: () => call.localStream,
  // The safety codes as the page computed them: {room: words|null, links: {peer id: {state, words}}}.
  verification: () => {
    const summary = call.verification ? call.verification.summary() : null;
    if (!summary) return null;
    return {
      room: summary.words ? [...summary.words] : null,
      contradictions: summary.contradictions.map((pair) => [...pair]),
      links: Object.fromEntries([...summary.links].map(([id, link]) => [id, {
        state: link.state, words: link.words ? [...link.words] : null, problem: link.problem,
      }])),
    };
  },
});

start();
