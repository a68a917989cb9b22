// The XES signalling wire format, version 2: message constructors for what the client sends and a
// validator for what the server sends. docs/protocol.md is the contract; this file mirrors it and
// must change in the same commit when it does.

/** Protocol version this client speaks (`hello.protocol`). */
export const PROTOCOL_VERSION = 2;

/** Peer and room ids: 22 base64url characters (128 random bits). */
export const ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;

/** Display names: 1-64 characters after trimming, no control characters. */
export const NAME_MAX_LENGTH = 64;

/** Matchmaking tags: at most 8, each 1-32 characters. */
export const MAX_TAGS = 8;
export const TAG_MAX_LENGTH = 32;

/**
 * Every code the server closes the socket with (docs/protocol.md, "Close codes"), named as in
 * src/xes/protocol/codes.py; a test checks that the two tables and the document agree.
 */
export const CLOSE_CODES = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  TOO_MANY_ERRORS: 4002,
  NOT_READING: 4009,
  REPLACED: 4010,
  FLOOD: 4029,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
});

/** Thrown by {@link parseServerMessage} for a frame that breaks the contract. */
export class ProtocolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

// A human sentence for every `error` code in docs/protocol.md (and in src/xes/protocol/codes.py:
// a test checks that the keys are exactly those codes). Written for the person using the page, so
// they say what happened and, where there is one, what to do about it.
const ERROR_SENTENCES = Object.freeze({
  'bad-json': 'The server could not read a message from this page. Reloading the page should fix it.',
  'unknown-type': 'The server did not understand a message from this page. Reload the page; it may be out of date.',
  'bad-field': 'The server refused something this page sent.',
  'too-big': 'A message was too large to send.',
  'not-joined': 'You are not in a room any more. Press Join to enter again.',
  'already-joined': 'You are already in a room or waiting for a match.',
  'peer-not-found': 'That person is no longer in this room.',
  'room-full': 'This room is full. Ask someone inside to make room, or start a new room.',
  'room-locked': 'This room is locked: its host is not letting anyone else in.',
  'password-required': 'This room has a password. Enter it and press Join.',
  'wrong-password': 'That password is not right. Check it and press Join again.',
  banned: 'The host has banned you from this room.',
  declined: 'The host declined your request to join.',
  'not-host': 'Only the host of the room can do that.',
  'not-queued': 'You are not waiting for a match.',
  'turn-unavailable': 'This server has no relay (TURN) configured.',
  'session-gone': 'The connection to the server was lost for too long, so this page joined again.',
  'identity-required': 'This page has not proven its identity to the server yet. Reload the page.',
  'identity-refused': 'The server could not check this browser\'s identity. Reload the page.',
  'too-many-identities': 'Too many new visitors from your network today. Please try again tomorrow.',
  'identity-banned': 'A moderator has banned you from talking to strangers.',
  cooldown: 'You cannot talk to strangers for a while after bad ratings.',
});

/** Every `error` code the server sends; each has a sentence above. */
export const ERROR_CODES = Object.freeze(Object.keys(ERROR_SENTENCES));

/**
 * A sentence a person can act on for a protocol `error` message.
 * @param {{code: string, message?: string}} error the `error` message from the server
 * @returns {string}
 */
export function describeError(error) {
  const sentence = ERROR_SENTENCES[error.code];
  if (sentence === undefined) {
    return `The server refused a request (${error.code}).`;
  }
  // bad-field names the field; that detail helps more than it confuses.
  if (error.code === 'bad-field' && error.message) return `${sentence} (${error.message})`;
  if (error.code === 'cooldown' && Number.isFinite(error.retry_after)) {
    return `${sentence} Time left: ${describeDuration(error.retry_after)}.`;
  }
  return sentence;
}

/**
 * Trim a display name and check it against the protocol's limits.
 * @param {string} raw what the person typed
 * @returns {{ok: true, name: string} | {ok: false, reason: string}}
 */
export function checkName(raw) {
  const name = raw.trim();
  if (name.length === 0) return { ok: false, reason: 'Please enter a display name.' };
  if ([...name].length > NAME_MAX_LENGTH) {
    return { ok: false, reason: `A display name can be at most ${NAME_MAX_LENGTH} characters.` };
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) {
    return { ok: false, reason: 'A display name cannot contain control characters.' };
  }
  return { ok: true, name };
}

/**
 * Split a comma-separated tag field into protocol-valid tags (trimmed, unique, at most 8).
 * @param {string} raw
 * @returns {string[]}
 */
export function parseTags(raw) {
  const tags = [];
  for (const part of raw.split(',')) {
    const tag = part.trim().toLowerCase().slice(0, TAG_MAX_LENGTH);
    if (tag && !tags.includes(tag)) tags.push(tag);
    if (tags.length === MAX_TAGS) break;
  }
  return tags;
}

/** The fewest members a host may set as a room's maximum (docs/protocol.md, `set-rules`). */
export const MIN_MAX_PEERS = 2;

/** Password length limits for `join` and `set-rules`. */
export const PASSWORD_MAX_LENGTH = 256;

/**
 * Short labels for a room's rules, as everyone in the room sees them ("Locked", "Max 4 people").
 * @param {{locked: boolean, lobby: boolean, password: boolean, max_peers: number}} rules
 * @returns {string[]}
 */
export function describeRules(rules) {
  const labels = [];
  if (rules.locked) labels.push('Locked');
  if (rules.password) labels.push('Password set');
  if (rules.lobby) labels.push('Lobby on');
  if (labels.length === 0) labels.push('Open to anyone with the link');
  labels.push(`Max ${rules.max_peers} people`);
  return labels;
}

/**
 * What the person taken out of a room is told (`removed`).
 * @param {boolean} banned
 * @returns {string}
 */
export function describeRemoval(banned) {
  return banned
    ? 'You were removed from the room and banned: this browser cannot come back while the room lasts.'
    : 'You were removed from the room. You can join again if the host lets you.';
}

// --- messages from the client ------------------------------------------------------------------

/**
 * "59 min" or "23 h 59 min": a cooldown's time left, in words (as the server's own message).
 * @param {number} seconds
 */
export function describeDuration(seconds) {
  const total = Math.max(1, Math.ceil(seconds / 60));
  const hours = Math.floor(total / 60);
  const minutes = total % 60;
  return hours ? `${hours} h ${minutes} min` : `${minutes} min`;
}

/**
 * `join`: enter a room (created on first join). `hostKey` is the secret the server gave this page
 * as the room's host: after a server restart it gives the host its role back.
 * @param {{room: string, name: string, password?: string, rollback?: boolean,
 *          hostKey?: string|null}} fields
 */
export function join({ room, name, password, rollback = true, hostKey = null }) {
  const message = { type: 'join', room, name, rollback };
  if (password !== undefined && password !== '') message.password = password;
  if (hostKey) message.host_key = hostKey;
  return message;
}

/** `leave`: leave the current room. */
export function leave() {
  return { type: 'leave' };
}

/**
 * `signal`: relay an opaque payload to one member of the room.
 * @param {string} to peer id
 * @param {object} data `{description}` or `{candidate}`
 */
export function signal(to, data) {
  return { type: 'signal', to, data };
}

/** `ice-refresh`: ask for fresh ICE (TURN) credentials. */
export function iceRefresh() {
  return { type: 'ice-refresh' };
}

/**
 * `set-rules` (host only).
 * @param {{locked?: boolean, lobby?: boolean, password?: string|null, max_peers?: number}} rules
 */
export function setRules(rules) {
  return { type: 'set-rules', ...rules };
}

/** @param {string} peer */
export function admit(peer) {
  return { type: 'admit', peer };
}

/** @param {string} peer */
export function decline(peer) {
  return { type: 'decline', peer };
}

/** @param {string} peer */
export function remove(peer) {
  return { type: 'remove', peer };
}

/** @param {string} peer */
export function ban(peer) {
  return { type: 'ban', peer };
}

/**
 * `match`: queue to talk to a stranger. `direct` is the user's consent to a direct connection,
 * which shows the stranger their IP address; without it the server keeps the call on the relay,
 * or refuses (`turn-unavailable`) when it has none. `textOnly` asks for a text chat without a
 * microphone; `acceptText` lets a voice user be paired with a text-only one (docs/protocol.md,
 * "Text only"). Both are sent only when true, as the server's defaults are false.
 * @param {{name: string, tags?: string[], language?: string, rollback?: boolean,
 *          direct?: boolean, textOnly?: boolean, acceptText?: boolean}} fields
 */
export function match({
  name, tags = [], language = '', rollback = true, direct = false, textOnly = false, acceptText = false,
}) {
  const message = { type: 'match', name, rollback, direct };
  if (tags.length > 0) message.tags = tags;
  if (language) message.language = language;
  if (textOnly) message.text_only = true;
  else if (acceptText) message.accept_text = true;
  return message;
}

/** `next`: leave the current match and queue again. */
export function next() {
  return { type: 'next' };
}

/** @param {string} peer */
export function block(peer) {
  return { type: 'block', peer };
}

/** `stop`: leave the queue and the current match. */
export function stop() {
  return { type: 'stop' };
}

/**
 * `resume`: the first message on a new connection, to continue a session whose socket was lost
 * (docs/protocol.md, "Sessions"). `token` is a secret: never log this message.
 * @param {{peer: string, token: string, lastSeq: number}} fields
 */
export function resume({ peer, token, lastSeq }) {
  return { type: 'resume', peer, token, last_seq: lastSeq };
}

/**
 * `hearing`: this page still receives the audio of `peer`, which the server announced away.
 * @param {string} peer
 */
export function hearing(peer) {
  return { type: 'hearing', peer };
}

/** The close code a client uses when it drops a socket on purpose to resume on a new one. */
export const CLOSE_TO_RESUME = 4000;

/** What a browser signs to prove its identity: this, then `hello.challenge` (docs/protocol.md). */
export const IDENTIFY_CONTEXT = 'xes-identify-v1:';

/**
 * `identify`: prove this browser's identity for this connection.
 * @param {string} publicKey the P-256 public key, uncompressed point, base64url
 * @param {string} signature r || s over IDENTIFY_CONTEXT + challenge, base64url
 */
export function identify(publicKey, signature) {
  return { type: 'identify', public_key: publicKey, signature };
}

/**
 * `rate`: "Good call" (true) or "Bad call" (false) about the current or last stranger.
 * @param {string} peer @param {boolean} good
 */
export function rate(peer, good) {
  return { type: 'rate', peer, good };
}

/** Report reasons, as the server knows them, with the words the page shows. */
export const REPORT_REASONS = Object.freeze({
  harassment: 'Harassment',
  hate: 'Hate',
  'sexual-content': 'Sexual content',
  'under-18': 'Suspected under 18',
  other: 'Other',
});

/**
 * `report`: tell the moderators about the current or last stranger.
 * @param {string} peer @param {string} reason a key of REPORT_REASONS @param {string} [text]
 */
export function report(peer, reason, text = '') {
  const message = { type: 'report', peer, reason };
  if (text) message.text = text.slice(0, 1000);
  return message;
}

// --- messages from the server ------------------------------------------------------------------

const isString = (v) => typeof v === 'string';
const isId = (v) => isString(v) && ID_PATTERN.test(v);
const isBool = (v) => typeof v === 'boolean';
const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
// `text_only` is written only for a text-only stranger (docs/protocol.md, "Text only").
const isPeer = (v) => isObject(v) && isId(v.id) && isString(v.name) && (v.text_only === undefined || isBool(v.text_only));
const isNumber = (v) => typeof v === 'number' && Number.isFinite(v);
const isRules = (v) =>
  isObject(v) && isBool(v.locked) && isBool(v.lobby) && isBool(v.password) && isNumber(v.max_peers);
const isIceServers = (v) => Array.isArray(v) && v.every((s) => isObject(s) && s.urls !== undefined);

// Required fields per server message type; extra fields are ignored, as the contract says.
const SERVER_SCHEMAS = Object.freeze({
  hello: { protocol: isNumber, peer: isId, resume: isId, challenge: isString },
  joined: {
    room: isId,
    you: isId,
    host: (v) => v === null || isId(v), // null: a restored room waits for its host
    peers: (v) => Array.isArray(v) && v.every((p) => isPeer(p) && isBool(p.polite)),
    rules: isRules,
    ice_servers: isIceServers,
    ice_transport_policy: (v) => v === 'all' || v === 'relay',
  },
  'peer-joined': { peer: (v) => isPeer(v) && isBool(v.polite) },
  'peer-left': { peer: isId, reason: isString },
  signal: { from: isId, data: isObject },
  left: { room: isId },
  host: { peer: isId },
  rules: { rules: isRules },
  lobby: { room: isId },
  knock: { peer: isPeer },
  'knock-withdrawn': { peer: isId },
  removed: { room: isId, banned: isBool },
  queued: {},
  unqueued: {},
  'ice-servers': { ice_servers: isIceServers },
  identified: { banned: isBool },
  noted: { ref: isString },
  error: { code: isString },
  resumed: {
    peer: isId,
    resume: isId,
    last_seq: isNumber,
    room: (v) => v === null || (isObject(v) && isId(v.room) && (v.host === null || isId(v.host)) && Array.isArray(v.peers)
      && v.peers.every((p) => isPeer(p) && isBool(p.polite)) && isRules(v.rules)
      && Array.isArray(v.away)),
    queued: isBool,
    ice_servers: isIceServers,
  },
  'peer-away': { peer: isId },
  'peer-back': { peer: isId },
});

/** Every message type the server sends, as listed in src/xes/protocol/messages.py (a test checks). */
export const SERVER_MESSAGE_TYPES = Object.freeze(Object.keys(SERVER_SCHEMAS));

/**
 * Parse and validate one text frame from the server.
 * @param {string} text the frame
 * @returns {object} the message, with a known `type` and its required fields checked
 * @throws {ProtocolError} when it is not JSON, not an object, of unknown type or misses a field
 */
export function parseServerMessage(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    throw new ProtocolError('server frame is not JSON');
  }
  if (!isObject(message) || !isString(message.type)) {
    throw new ProtocolError('server frame is not an object with a type');
  }
  const schema = SERVER_SCHEMAS[message.type];
  if (schema === undefined) throw new ProtocolError(`unknown server message type ${message.type}`);
  for (const [field, valid] of Object.entries(schema)) {
    if (!valid(message[field])) {
      throw new ProtocolError(`server message ${message.type} has a bad ${field}`);
    }
  }
  return message;
}

/**
 * Whether an ICE server list offers a TURN relay (what "Hide my IP" needs).
 * @param {RTCIceServer[]} iceServers
 * @returns {boolean}
 */
export function hasTurn(iceServers) {
  return iceServers.some((server) => {
    const urls = Array.isArray(server.urls) ? server.urls : [server.urls];
    return urls.some((url) => /^turns?:/i.test(url));
  });
}
