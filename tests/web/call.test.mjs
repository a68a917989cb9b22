// call.js without a browser: the call's state and transitions, driven the way the server and
// the peers drive them, with fakes for the WebSocket and RTCPeerConnection (fakes.mjs).
// Run with `node --test tests/web/`; tests/web/test_node.py runs it as part of pytest.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  FakeMediaStream, FakeRTCPeerConnection, FakeTrack, FakeWebSocket, installFakes, settle, tokenOf,
} from './fakes.mjs';
import { Call, Phase, RESTORING_IN_CALL } from '../../src/xes/web/call.js';
import { Signalling } from '../../src/xes/web/signalling.js';
import { MicrophoneError } from '../../src/xes/web/media.js';
import { FIRST_SIGNALS_WAIT_MAX_MS } from '../../src/xes/web/mesh.js';
import {
  LINK_CONNECT_TIMEOUT_MS, PACE_SAMPLES, SETTLE_FALLBACK_MS, SETTLE_GRACE_MS, SignalPace,
} from '../../src/xes/web/negotiation.js';

const reset = installFakes();

// What links say in the console when they restart or are made anew (Negotiation.warn): kept
// here for the tests that check it, not printed among the test output.
const warnings = [];
console.warn = (...parts) => warnings.push(parts.join(' '));

const ROOM = 'R'.repeat(22);
const ME = 'M'.repeat(22);
const ME_AGAIN = 'N'.repeat(22);
const ADA = 'A'.repeat(22);
const BOB = 'B'.repeat(22);
const CAROL = 'C'.repeat(22);
const RULES = Object.freeze({ locked: false, lobby: false, password: false, max_peers: 8 });

function joinedMessage(fields = {}) {
  return {
    type: 'joined', room: ROOM, you: ME, host: ME, peers: [], rules: RULES, ice_servers: [],
    ice_expires_at: null, ice_transport_policy: 'all', match: false, ...fields,
  };
}

/** A Call on a fresh Signalling and microphone; everything is closed when the test ends. */
function makeCall(t, options = {}) {
  reset();
  const microphone = new FakeMediaStream([new FakeTrack()]);
  const signalling = new Signalling('ws://xes.test/ws');
  const call = new Call({
    signalling, roomId: ROOM, openMicrophone: async () => microphone, ...options,
  });
  const events = [];
  for (const type of ['track', 'linkremoved', 'teardown', 'passwordrequired', 'directconsentrequired']) {
    call.addEventListener(type, ({ detail }) => events.push({ type, detail }));
  }
  t.after(() => {
    call.end();
    signalling.close();
  });
  return { call, signalling, microphone, events };
}

/** Join the room (the server accepting) with `fields` in `joined`. */
async function inRoom(t, fields = {}, options = {}) {
  const context = makeCall(t, options);
  const joining = context.call.join('Me');
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME);
  await joining;
  socket.serverSends(joinedMessage(fields));
  await settle();
  return { ...context, socket };
}

const signalsTo = (socket, peer) => socket.sentOf('signal').filter((message) => message.to === peer);

test('join opens the microphone, then the socket, then sends the room, the name and the key', async (t) => {
  const { call } = makeCall(t);
  const joining = call.join('Me');
  assert.equal(call.phase, Phase.JOINING);
  await settle();
  const socket = FakeWebSocket.latest;
  assert.deepEqual(socket.sent, [], 'nothing is sent before hello');
  socket.open(ME);
  await joining;
  assert.deepEqual(socket.sent, [{ type: 'join', room: ROOM, name: 'Me', rollback: true}]);
  assert.equal(call.phase, Phase.JOINING);
});

test('an invalid room link is refused before the microphone or the socket', async (t) => {
  const { call } = makeCall(t, { roomId: 'not-a-room' });
  await call.join('Me');
  assert.equal(call.phase, Phase.IDLE);
  assert.equal(FakeWebSocket.made.length, 0);
  assert.match(call.alerts.get('room'), /not valid/);
});

test('a refused microphone keeps the page idle and says why', async (t) => {
  const refusal = new MicrophoneError('denied', 'Microphone access was denied.');
  const { call } = makeCall(t, { openMicrophone: async () => { throw refusal; } });
  await call.join('Me');
  assert.equal(call.phase, Phase.IDLE);
  assert.equal(call.alerts.get('microphone'), 'Microphone access was denied.');
  assert.equal(FakeWebSocket.made.length, 0, 'no socket for a call that cannot talk');
});

test('joined: one link per member, we offer to each, without the speech-level extension', async (t) => {
  const peers = [{ id: ADA, name: 'Ada', polite: true }, { id: BOB, name: 'Bob', polite: false }];
  const { call, socket, microphone } = await inRoom(t, { peers });
  assert.equal(call.phase, Phase.JOINED);
  assert.equal(call.isHost, true);
  assert.deepEqual([...call.peers.values()].map((peer) => [peer.name, peer.connectionState]),
    [['Ada', 'new'], ['Bob', 'new']]);
  assert.equal(FakeRTCPeerConnection.made.length, 2);
  for (const pc of FakeRTCPeerConnection.made) {
    assert.deepEqual(pc.senders.map((sender) => sender.track), microphone.getAudioTracks());
  }
  for (const peer of [ADA, BOB]) {
    const [offer] = signalsTo(socket, peer);
    assert.equal(offer.data.description.type, 'offer');
    assert.doesNotMatch(offer.data.description.sdp, /ssrc-audio-level/);
  }
  // Bob can roll back (a browser): its data channel waits for the voice. Ada cannot (polite
  // toward her: aiortc), so hers comes with the first offer.
  assert.match(signalsTo(socket, ADA)[0].data.description.sdp, /^m=application/m);
  assert.doesNotMatch(signalsTo(socket, BOB)[0].data.description.sdp, /^m=application/m);
});

test('joining, `joinSignalsPending` holds until each member has our offer and first candidate and we have its answer', async (t) => {
  const context = makeCall(t);
  const joining = context.call.join('Me');
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME);
  await joining;
  const out = [];
  context.call.addEventListener('firstsignalsout', () => out.push(socket.sentOf('signal').length));
  socket.serverSends(joinedMessage({ peers: [{ id: ADA, name: 'Ada', polite: false }, { id: BOB, name: 'Bob', polite: false }] }));
  assert.equal(context.call.joinSignalsPending, true, 'the view waits for the offers');
  await settle();
  assert.equal(socket.sentOf('signal').length, 2, 'both offers left');
  assert.equal(context.call.joinSignalsPending, true, 'no candidate out, no answer back yet');
  const [toAda, toBob] = FakeRTCPeerConnection.made;
  for (const pc of [toAda, toBob]) pc.gatherCandidate();
  await settle();
  assert.equal(context.call.joinSignalsPending, true, 'the answers are still on their way');
  socket.serverSends({ type: 'signal', from: ADA, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  await settle();
  assert.equal(context.call.joinSignalsPending, true, 'Bob has not answered');
  assert.deepEqual(out, []);
  socket.serverSends({ type: 'signal', from: BOB, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  await settle();
  assert.equal(context.call.joinSignalsPending, false);
  assert.deepEqual(out, [4], 'said once, after both answers were applied');
});

test('a member slow to answer keeps the join\'s first signals pending for FIRST_SIGNALS_WAIT_MAX_MS at most', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { call } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: true }] });
  const out = [];
  call.addEventListener('firstsignalsout', () => out.push('out'));
  const [pc] = FakeRTCPeerConnection.made;
  pc.gatherCandidate();
  await settle();
  t.mock.timers.tick(FIRST_SIGNALS_WAIT_MAX_MS - 1);
  assert.equal(call.joinSignalsPending, true, 'no answer yet');
  t.mock.timers.tick(1);
  assert.equal(call.joinSignalsPending, false, 'the view no longer waits for Ada');
  assert.deepEqual(out, ['out']);
});

test('someone joins us: `joinSignalsPending` holds from peer-joined until our answer and first candidate have left', async (t) => {
  const { call, socket } = await inRoom(t);
  const out = [];
  call.addEventListener('firstsignalsout', () => out.push(signalsTo(socket, CAROL).length));
  socket.serverSends({ type: 'peer-joined', peer: { id: CAROL, name: 'Carol', polite: true } });
  await settle();
  assert.equal(call.joinSignalsPending, true, 'the view waits for the newcomer\'s offer');
  socket.serverSends({ type: 'signal', from: CAROL, data: { description: { type: 'offer', sdp: 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n' } } });
  await settle();
  assert.equal(call.joinSignalsPending, true, 'the answer has left, our first candidate not yet');
  const pc = FakeRTCPeerConnection.made.at(-1);
  pc.gatherCandidate();
  await settle();
  assert.equal(call.joinSignalsPending, false);
  assert.deepEqual(out, [2], 'said once, when the answer and then the candidate were sent');
  // A newcomer who leaves before offering does not keep the view waiting.
  socket.serverSends({ type: 'peer-joined', peer: { id: BOB, name: 'Bob', polite: true } });
  await settle();
  assert.equal(call.joinSignalsPending, true);
  socket.serverSends({ type: 'peer-left', peer: BOB, reason: 'left' });
  await settle();
  assert.equal(call.joinSignalsPending, false);
  assert.equal(out.length, 2);
});

test('toward a browser the data channel follows in a second offer once the voice flows', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { call, socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: false }] });
  const [pc] = FakeRTCPeerConnection.made;
  assert.equal(pc.channels.length, 0, 'the first offer carries the audio alone');
  socket.serverSends({ type: 'signal', from: ADA, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  await settle();
  assert.equal(call.sendChat('too early').ok, false, 'not connected: not sent');
  pc.connect();
  const voice = new FakeTrack('audio', 'Ada', { muted: true });
  pc.receiveTrack(new FakeMediaStream([voice]));
  voice.unmute();
  assert.deepEqual(call.sendChat('hello'), { ok: true }, 'connected: kept for the channel');
  t.mock.timers.tick(SETTLE_GRACE_MS);
  await settle();
  assert.equal(pc.channels.length, 1);
  const offers = signalsTo(socket, ADA).filter((signal) => signal.data.description?.type === 'offer');
  assert.equal(offers.length, 2);
  assert.match(offers[1].data.description.sdp, /^m=application/m);
  socket.serverSends({ type: 'signal', from: ADA, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  await settle();
  pc.channels[0].open();
  const sent = pc.channels[0].sent.filter((message) => message.type === 'chat' || message.type === 'mute');
  assert.deepEqual(sent, [{ type: 'chat', text: 'hello' }, { type: 'mute', muted: false }]);
});

test('a member makes its end of the data channel only with an offer that has its m-line', async (t) => {
  const { socket } = await inRoom(t);
  socket.serverSends({ type: 'peer-joined', peer: { id: CAROL, name: 'Carol', polite: true } });
  socket.serverSends({ type: 'signal', from: CAROL, data: { description: { type: 'offer', sdp: 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n' } } });
  await settle();
  const [pc] = FakeRTCPeerConnection.made;
  assert.equal(pc.channels.length, 0);
  socket.serverSends({ type: 'signal', from: CAROL, data: { description: {
    type: 'offer', sdp: 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n',
  } } });
  await settle();
  assert.equal(pc.channels.length, 1);
  assert.deepEqual(signalsTo(socket, CAROL).map((signal) => signal.data.description?.type).filter(Boolean),
    ['answer', 'answer'], 'answers only: the member never offers on its own');
});

test('an answer, then connected: the roster says so and the remote stream goes to the view', async (t) => {
  const { call, socket, events } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: true }] });
  const [pc] = FakeRTCPeerConnection.made;
  socket.serverSends({ type: 'signal', from: ADA, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  await settle();
  assert.equal(pc.signalingState, 'stable');
  pc.connect();
  pc.receiveTrack();
  assert.equal(call.peers.get(ADA).connectionState, 'connected');
  const tracks = events.filter((event) => event.type === 'track');
  assert.deepEqual(tracks.map((event) => event.detail.peerId), [ADA]);
});

test('a newcomer offers and we answer on the same link; when it leaves its link closes', async (t) => {
  const { call, socket, events, microphone } = await inRoom(t);
  socket.serverSends({ type: 'peer-joined', peer: { id: CAROL, name: 'Carol', polite: false } });
  await settle();
  assert.deepEqual(signalsTo(socket, CAROL), [], 'the member already there waits for the offer');
  assert.equal(FakeRTCPeerConnection.made.length, 0, 'and makes its link when the offer comes');
  socket.serverSends({ type: 'signal', from: CAROL, data: { description: { type: 'offer', sdp: 'v=0\r\n' } } });
  await settle();
  const [pc] = FakeRTCPeerConnection.made;
  const [answer] = signalsTo(socket, CAROL);
  assert.equal(answer.data.description.type, 'answer');
  assert.deepEqual(pc.senders.map((sender) => sender.track), microphone.getAudioTracks());
  socket.serverSends({ type: 'peer-left', peer: CAROL, reason: 'left' });
  assert.equal(pc.connectionState, 'closed');
  assert.equal(call.peers.size, 0);
  assert.deepEqual(events.filter((event) => event.type === 'linkremoved').map((event) => event.detail.peerId),
    [CAROL]);
});

test('a newcomer whose offer never comes is reported like a link that cannot connect', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { call, socket } = await inRoom(t);
  socket.serverSends({ type: 'peer-joined', peer: { id: CAROL, name: 'Carol', polite: false } });
  await settle();
  t.mock.timers.tick(LINK_CONNECT_TIMEOUT_MS - 1);
  assert.equal(call.alerts.has(`link-${CAROL}`), false);
  t.mock.timers.tick(1);
  assert.match(call.alerts.get(`link-${CAROL}`), /Carol/);
  assert.equal(FakeRTCPeerConnection.made.length, 0, 'reported without making a connection');
  socket.serverSends({ type: 'signal', from: CAROL, data: { description: { type: 'offer', sdp: 'v=0\r\n' } } });
  await settle();
  assert.equal(FakeRTCPeerConnection.made.length, 1, 'a late offer still makes the link');
  assert.equal(signalsTo(socket, CAROL)[0].data.description.type, 'answer');
});

test('an offer with a new DTLS certificate from a linked peer is a new link: the old one closes', async (t) => {
  // A Python peer (it cannot roll back: we are polite toward it) whose network changed makes its
  // link anew and offers on it (docs/protocol.md, "A new link from a peer already linked").
  const { call, socket, events, microphone } = await inRoom(t);
  socket.serverSends({ type: 'peer-joined', peer: { id: CAROL, name: 'Carol', polite: true } });
  await settle();
  const offer = (fingerprint) => ({
    type: 'signal', from: CAROL,
    data: { description: { type: 'offer', sdp: `v=0\r\na=fingerprint:sha-256 ${fingerprint}\r\n` } },
  });
  socket.serverSends(offer('AA:01'));
  await settle();
  const [old] = FakeRTCPeerConnection.made;
  socket.serverSends(offer('aa:01')); // the same certificate: a renegotiation of this link
  await settle();
  assert.equal(FakeRTCPeerConnection.made.length, 1);
  old.connect();
  socket.serverSends(offer('BB:02'));
  await settle();
  assert.equal(FakeRTCPeerConnection.made.length, 2, 'a fresh RTCPeerConnection');
  const [, fresh] = FakeRTCPeerConnection.made;
  assert.equal(old.connectionState, 'closed');
  assert.equal(fresh.remoteDescription.sdp, offer('BB:02').data.description.sdp);
  assert.equal(signalsTo(socket, CAROL).at(-1).data.description.type, 'answer');
  assert.deepEqual(fresh.senders.map((sender) => sender.track), microphone.getAudioTracks());
  assert.deepEqual([...call.peers.keys()], [CAROL], 'still in the room: nobody left');
  assert.deepEqual(events.filter((event) => event.type === 'linkremoved').map((event) => event.detail.peerId),
    [CAROL], 'the view stops playing the old link');
});

test('mute silences the microphone; push-to-talk opens it only while held, and only in a call', async (t) => {
  const { call, microphone } = await inRoom(t);
  const [track] = microphone.getAudioTracks();
  call.toggleMute();
  assert.equal(track.enabled, false);
  call.holdToTalk('space', true);
  assert.equal(track.enabled, true);
  call.holdToTalk('button', true);
  call.holdToTalk('space', false);
  assert.equal(track.enabled, true, 'still held by the button');
  call.holdToTalk('button', false);
  assert.equal(track.enabled, false);
  call.toggleMute();
  assert.equal(track.enabled, true);
  call.leave();
  call.holdToTalk('space', true);
  assert.equal(call.talkHeld.size, 0, 'no holding outside a call');
});

test('a lost server connection resumes the session: same id, same links, the replay once', async (t) => {
  const { call, signalling, socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: true }] });
  const [pc] = FakeRTCPeerConnection.made;
  socket.serverSends({ type: 'host', peer: ME, seq: 1 });
  socket.serverSends({ type: 'rules', rules: { ...RULES, locked: true }, seq: 2 });
  socket.drop();
  assert.equal(call.connectionNotice, RESTORING_IN_CALL);
  assert.equal(call.alerts.size, 0, 'nothing alarming: the call goes on');
  assert.equal(call.phase, Phase.JOINED);
  // A link's message while away waits for the resume instead of being lost.
  signalling.send({ type: 'signal', to: ADA, data: { candidate: null } });
  signalling.connect(); // what the backoff timer does
  const again = FakeWebSocket.latest;
  again.open(ME_AGAIN);
  assert.deepEqual(again.sent, [{ type: 'resume', peer: ME, token: tokenOf(ME), last_seq: 2 }],
    'resume first, with the last seq handled; the held signal waits for the answer');
  assert.equal(call.connectionNotice, RESTORING_IN_CALL, 'not back until the server says so');
  again.serverSends({
    type: 'resumed', peer: ME, resume: tokenOf(BOB), last_seq: 4, room: null, lobby: null,
    queued: false, ice_servers: [{ urls: 'stun:xes.test' }], ice_expires_at: null,
  });
  again.serverSends({ type: 'rules', rules: { ...RULES, locked: true }, seq: 2 }); // a repeat
  again.serverSends({ type: 'peer-joined', peer: { id: BOB, name: 'Bob', polite: false }, seq: 3 });
  again.serverSends({ type: 'signal', from: ADA, data: { candidate: null }, seq: 4 });
  await settle();
  assert.equal(call.connectionNotice, '');
  assert.equal(call.me.id, ME, 'the same peer id');
  assert.equal(call.isHost, true);
  assert.equal(pc.connectionState === 'closed', false, 'the link to Ada is untouched');
  assert.equal(FakeRTCPeerConnection.made.length, 1, "Bob's link waits for his offer");
  assert.equal(call.mesh.has(BOB), true, 'Bob, who joined meanwhile, is expected');
  assert.deepEqual([...call.peers.keys()], [ADA, BOB]);
  assert.deepEqual(again.sentOf('signal').filter((m) => m.to === ADA), [{ type: 'signal', to: ADA, data: { candidate: null } }]);
  assert.equal(signalling.session.token, tokenOf(BOB), 'the rotated token replaces the old one');
  assert.deepEqual(again.sentOf('join'), []);
});

test('a network change resumes the session on a new socket at once and restarts ICE', async (t) => {
  // Ada is a browser (we, the newcomer, are impolite toward her); Bob cannot roll back (aiortc),
  // so we are polite toward him and never offer him a restart.
  const peers = [{ id: ADA, name: 'Ada', polite: false }, { id: BOB, name: 'Bob', polite: true }];
  const { call, signalling, socket } = await inRoom(t, { peers }, { connectionType: 'wifi' });
  const [toAda, toBob] = FakeRTCPeerConnection.made;
  socket.serverSends({ type: 'host', peer: ME, seq: 1 });
  call.networkChanged('wifi');
  assert.equal(FakeWebSocket.latest, socket, 'the same connection type: no network change');
  call.networkChanged('cellular');
  assert.equal(socket.closedWith, 4000, 'the stale socket detaches the session, never ends it');
  const again = FakeWebSocket.latest;
  assert.notEqual(again, socket, 'a new socket at once, not after a backoff');
  assert.equal(signalling.state, 'lost');
  again.open(ME_AGAIN);
  assert.deepEqual(again.sent, [{ type: 'resume', peer: ME, token: tokenOf(ME), last_seq: 1 }]);
  again.serverSends({
    type: 'resumed', peer: ME, resume: tokenOf(ADA), last_seq: 1, room: null, lobby: null,
    queued: false, ice_servers: [], ice_expires_at: null,
  });
  await new Promise((resolve) => setTimeout(resolve, 150)); // the mesh's settle time for bursts
  assert.equal(call.me.id, ME, 'the same peer id: nobody saw us leave');
  assert.deepEqual(again.sentOf('join'), [], 'no rejoin');
  assert.equal(FakeRTCPeerConnection.made.length, 2, 'every link kept');
  assert.deepEqual([toAda.restarts, toBob.restarts], [1, 0], 'ICE restarted where we may offer');
  call.networkChanged(); // `online`, a second burst
  assert.equal(again.closedWith, 4000);
  assert.equal(FakeWebSocket.made.length, 3);
});

test('a session the server no longer has falls back to joining under the new peer id', async (t) => {
  const { call, signalling, socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: true }] });
  const [pc] = FakeRTCPeerConnection.made;
  socket.drop();
  assert.notEqual(pc.connectionState, 'closed', 'audio goes peer to peer: the link stays');
  signalling.connect(); // what the backoff timer does
  const again = FakeWebSocket.latest;
  again.open(ME_AGAIN);
  assert.deepEqual(again.sentOf('resume').map((message) => message.peer), [ME]);
  again.serverSends({ type: 'error', code: 'session-gone', message: 'gone', ref: 'resume' });
  assert.equal(call.connectionNotice, '');
  assert.equal(call.phase, Phase.JOINING);
  assert.deepEqual(again.sentOf('join').map((message) => message.room), [ROOM]);
  again.serverSends(joinedMessage({ you: ME_AGAIN, host: ADA, peers: [{ id: ADA, name: 'Ada', polite: true }] }));
  await settle();
  assert.equal(pc.connectionState, 'closed', 'links to old peer ids are replaced');
  assert.equal(FakeRTCPeerConnection.made.length, 2);
  assert.equal(call.me.id, ME_AGAIN);
  assert.equal(call.isHost, false);
});

test('after a crash the host proves itself: its host key, kept per room, goes in the rejoin', async (t) => {
  const hostKeys = new Map();
  const { call, signalling, socket } = await inRoom(t, { host_key: 'H'.repeat(22) }, { hostKeys });
  assert.equal(hostKeys.get(ROOM), 'H'.repeat(22));
  socket.serverSends({ type: 'host', peer: ME, host_key: 'I'.repeat(22), seq: 2 }); // a new key
  socket.drop();
  signalling.connect();
  const again = FakeWebSocket.latest;
  again.open(ME_AGAIN);
  again.serverSends({ type: 'error', code: 'session-gone', message: 'gone', ref: 'resume' });
  assert.deepEqual(again.sentOf('join').map((message) => message.host_key), ['I'.repeat(22)]);
  // A restored room has nobody as host until its host is back.
  again.serverSends(joinedMessage({ you: ME_AGAIN, host: null }));
  await settle();
  assert.equal(call.isHost, false);
  again.serverSends({ type: 'host', peer: ME_AGAIN, seq: 2 });
  assert.equal(call.isHost, true);
});

test('a stranger call ends, and frees the microphone, only when the server lost the session', async (t) => {
  const { call, signalling, microphone } = makeCall(t);
  const finding = call.findStranger('Me', { tags: ['jazz'], language: '' });
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME);
  await finding;
  assert.deepEqual(socket.sentOf('match'),
    [{ type: 'match', name: 'Me', rollback: true, direct: false, tags: ['jazz']}]);
  socket.serverSends({ type: 'queued' });
  assert.equal(call.phase, Phase.QUEUED);
  socket.serverSends(joinedMessage({ match: true, host: ADA, peers: [{ id: ADA, name: 'Ada', polite: true }] }));
  assert.equal(call.isMatch, true);
  assert.equal(call.isHost, false, 'nobody hosts a stranger call');
  socket.drop();
  assert.equal(call.phase, Phase.JOINED, 'a blip does not end the conversation');
  signalling.connect();
  FakeWebSocket.latest.open(ME_AGAIN);
  assert.equal(call.phase, Phase.JOINED, 'still, while the resume is asked for');
  FakeWebSocket.latest.serverSends({ type: 'error', code: 'session-gone', message: 'gone', ref: 'resume' });
  assert.equal(call.phase, Phase.IDLE);
  assert.match(call.alerts.get('signalling-match'), /lost for too long, so the conversation ended/);
  assert.equal(microphone.getAudioTracks()[0].readyState, 'ended');
  assert.deepEqual(FakeWebSocket.latest.sentOf('match'), [], 'no stranger is met without asking');
});

test('Next goes back to the queue keeping the microphone; Stop ends everything', async (t) => {
  const { call, microphone } = makeCall(t);
  const finding = call.findStranger('Me', { tags: [], language: '' });
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME);
  await finding;
  socket.serverSends(joinedMessage({ match: true, host: ADA, peers: [{ id: ADA, name: 'Ada', polite: true }] }));
  call.next();
  assert.equal(call.phase, Phase.QUEUED);
  assert.equal(FakeRTCPeerConnection.made[0].connectionState, 'closed');
  assert.equal(microphone.getAudioTracks()[0].readyState, 'live');
  call.stop();
  assert.deepEqual(socket.sent.slice(-2).map((message) => message.type), ['next', 'stop']);
  assert.equal(call.phase, Phase.IDLE);
  assert.equal(microphone.getAudioTracks()[0].readyState, 'ended');
});

test('Text only: no microphone, `text_only` in match, and a link with the data channel alone', async (t) => {
  let opened = 0;
  const { call } = makeCall(t, { openMicrophone: async () => { opened += 1; return new FakeMediaStream([new FakeTrack()]); } });
  const finding = call.findStranger('Me', { tags: [], language: '', textOnly: true, acceptText: true });
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME);
  await finding;
  assert.equal(opened, 0, 'the microphone is never asked for');
  assert.deepEqual(socket.sentOf('match'), [{ type: 'match', name: 'Me', rollback: true, direct: false, text_only: true }]);
  socket.serverSends(joinedMessage({ match: true, host: ADA, peers: [{ id: ADA, name: 'Ada', polite: true }] }));
  await settle();
  const [pc] = FakeRTCPeerConnection.made;
  assert.deepEqual([pc.senders.length, pc.transceivers.length, pc.channels.length], [0, 0, 1]);
  assert.equal(call.textChat, true);
  socket.serverSends({ type: 'signal', from: ADA, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  await settle();
  pc.connect();
  pc.channels[0].open();
  assert.deepEqual(call.sendChat('hi'), { ok: true });
  assert.deepEqual(pc.channels[0].sent.map((message) => message.type).filter((type) => type === 'chat' || type === 'mute'),
    ['chat'], 'no mute over a text chat: there is no microphone on it');
  call.next(); // back to the queue, still text only, still no microphone
  socket.serverSends(joinedMessage({ match: true, host: BOB, peers: [{ id: BOB, name: 'Bob', polite: true }] }));
  await settle();
  assert.deepEqual([FakeRTCPeerConnection.made[1].senders.length, FakeRTCPeerConnection.made[1].transceivers.length], [0, 0]);
  assert.equal(opened, 0);
});

test('Accept text chats: a text-only stranger gets a link without our microphone; a voice one with it', async (t) => {
  const { call } = makeCall(t);
  const finding = call.findStranger('Me', { tags: [], language: '', acceptText: true });
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME);
  await finding;
  assert.deepEqual(socket.sentOf('match'), [{ type: 'match', name: 'Me', rollback: true, direct: false, accept_text: true }]);
  socket.serverSends(joinedMessage({ match: true, host: ADA, peers: [{ id: ADA, name: 'Ada', polite: true, text_only: true }] }));
  await settle();
  assert.deepEqual([FakeRTCPeerConnection.made[0].senders.length, FakeRTCPeerConnection.made[0].transceivers.length], [0, 0]);
  assert.equal(call.textChat, true);
  assert.equal(call.peers.get(ADA).textOnly, true);
  call.next();
  socket.serverSends(joinedMessage({ match: true, host: BOB, peers: [{ id: BOB, name: 'Bob', polite: true }] }));
  await settle();
  assert.equal(FakeRTCPeerConnection.made[1].senders.length, 1, 'a voice stranger hears us');
  assert.equal(call.textChat, false);
});

test('without a relay and without consent to a direct connection, nothing is queued', async (t) => {
  const { call, events, microphone } = makeCall(t);
  const finding = call.findStranger('Me', { tags: [], language: '' });
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME, { relay: false });
  await finding;
  assert.deepEqual(socket.sentOf('match'), []);
  assert.equal(call.phase, Phase.IDLE);
  assert.ok(events.some((event) => event.type === 'directconsentrequired'));
  assert.equal(microphone.getAudioTracks()[0].readyState, 'ended');
});

test('a password refusal frees the microphone and asks for the password, which the retry sends', async (t) => {
  const { call, events, microphone } = makeCall(t);
  const joining = call.join('Me');
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME);
  await joining;
  socket.serverSends({ type: 'error', code: 'password-required', ref: 'join' });
  assert.equal(call.phase, Phase.IDLE);
  assert.equal(call.passwordNeeded, true);
  assert.ok(events.some((event) => event.type === 'passwordrequired'));
  assert.equal(microphone.getAudioTracks()[0].readyState, 'ended');
  assert.match(call.alerts.get('room-refused'), /password/);
  await call.join('Me', 'sesame');
  assert.equal(socket.sentOf('join').at(-1).password, 'sesame');
  socket.serverSends(joinedMessage());
  assert.equal(call.passwordNeeded, false);
  assert.equal(call.alerts.has('room-refused'), false);
});

test('host controls reach the server only while we are the host', async (t) => {
  const { call, socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: true }] });
  call.setRules({ locked: true });
  call.moderate('remove', ADA);
  socket.serverSends({ type: 'host', peer: ADA });
  call.setRules({ lobby: true });
  call.moderate('ban', ADA);
  assert.deepEqual(socket.sent.filter((message) => message.type !== 'signal'), [
    { type: 'join', room: ROOM, name: 'Me', rollback: true},
    { type: 'set-rules', locked: true },
    { type: 'remove', peer: ADA },
  ]);
});

/** The answer to the offer `pc` has out, from `peer`, as the server relays it. */
function answerFrom(socket, peer, pc, seq) {
  const ufrag = /a=ice-ufrag:(\S+)/.exec(pc.localDescription.sdp)[1];
  socket.serverSends({ type: 'signal', from: peer, seq,
    data: { description: { type: 'answer', sdp: `v=0\r\na=ice-ufrag:a${seq}\r\n` }, answers: ufrag } });
}

test('a new link whose ICE is still checking 10 s after its answer gets one restart from its first offerer', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  // We are the newcomer, so the first offerer toward both (impolite toward browsers).
  const peers = [{ id: ADA, name: 'Ada', polite: false }, { id: BOB, name: 'Bob', polite: false }];
  const { socket } = await inRoom(t, { peers });
  const [toAda, toBob] = FakeRTCPeerConnection.made;
  t.mock.timers.tick(7_000);
  assert.deepEqual([toAda.restarts, toBob.restarts], [0, 0], 'not before the answer: it may be slow');
  answerFrom(socket, ADA, toAda, 10);
  answerFrom(socket, BOB, toBob, 11);
  await settle();
  toAda.iceConnectionState = 'checking';
  toBob.connectionState = 'connected';
  t.mock.timers.tick(9_999);
  assert.deepEqual([toAda.restarts, toBob.restarts], [0, 0]);
  t.mock.timers.tick(1);
  await settle();
  assert.deepEqual([toAda.restarts, toBob.restarts], [1, 0], 'the connected one is left alone');
  assert.match(warnings.at(-1), new RegExp(`^XES link to ${ADA}: ICE restarted, still checking \\(`));
  // The restart's offer (negotiationneeded) is answered; ICE still checking 10 s later.
  toAda.dispatchEvent(new Event('negotiationneeded'));
  await settle();
  answerFrom(socket, ADA, toAda, 12);
  await settle();
  const made = FakeRTCPeerConnection.made.length;
  t.mock.timers.tick(10_000);
  await settle();
  assert.equal(toAda.restarts, 1, 'one restart, not one every 10 s');
  assert.equal(FakeRTCPeerConnection.made.length, made + 1,
    'still checking 10 s after the restart: the link is made anew');
  assert.equal(toAda.signalingState, 'closed');
});

test('a link whose ICE is through but whose handshake never finished is made anew, twice at most', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: false }] });
  let seq = 10;
  const stuck = async () => {
    const pc = FakeRTCPeerConnection.made.at(-1);
    answerFrom(socket, ADA, pc, (seq += 1));
    await settle();
    pc.iceConnectionState = 'connected';
    pc.connectionState = 'connecting';
    return pc;
  };
  const first = await stuck();
  t.mock.timers.tick(10_000);
  await settle();
  assert.equal(FakeRTCPeerConnection.made.length, 2, 'a new RTCPeerConnection: a new certificate');
  assert.equal(first.signalingState, 'closed', 'the stuck one is closed');
  assert.match(warnings.at(-1), /^XES link to A+: made anew, not connected \(connection connecting, ICE connected/);
  const offers = socket.sentOf('signal').filter((m) => m.to === ADA && m.data.description?.type === 'offer');
  assert.equal(offers.length, 2, 'the new link offers at once');
  await stuck();
  t.mock.timers.tick(10_000);
  await settle();
  await stuck();
  t.mock.timers.tick(10_000);
  await settle();
  assert.equal(FakeRTCPeerConnection.made.length, 3, 'twice at most');
});

/** In a room with Ada, our offer answered, ICE still checking: what the stuck watch looks at. */
async function checkingAfterAnswer(t) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: false }] });
  const [toAda] = FakeRTCPeerConnection.made;
  answerFrom(socket, ADA, toAda, 10);
  await settle();
  toAda.iceConnectionState = 'checking';
  return { socket, toAda };
}

test('a link that is getting somewhere is given more time before it is restarted', async (t) => {
  const { socket, toAda } = await checkingAfterAnswer(t);
  let answered = 0;
  const lookAfter = async (ms) => {
    // Each look finds more of our checks answered: a slow machine, not a stuck link.
    toAda.stats = new Map([['pair', { type: 'candidate-pair', responsesReceived: (answered += 1) }]]);
    t.mock.timers.tick(ms);
    await settle();
  };
  await lookAfter(10_000);
  await lookAfter(10_000);
  assert.equal(toAda.restarts, 0, 'progress: it waits');
  await lookAfter(10_000);
  assert.equal(toAda.restarts, 1, 'but not for ever: after 30 s it restarts all the same');
  toAda.dispatchEvent(new Event('negotiationneeded'));
  await settle();
  answerFrom(socket, ADA, toAda, 11);
  await settle();
  t.mock.timers.tick(10_000); // no progress at all since the last look: made anew at once
  await settle();
  assert.equal(toAda.signalingState, 'closed');
});

test('a link whose peer\'s candidates still arrive after its answer is given more time too', async (t) => {
  const { toAda, socket } = await checkingAfterAnswer(t);
  // A starved machine: none of our checks answered yet, but Ada's candidates trickle in late.
  for (const seq of [11, 12]) {
    socket.serverSends({ type: 'signal', from: ADA, seq,
      data: { candidate: { candidate: `candidate:${seq} 1 udp 1 127.0.0.1 ${seq} typ host`, sdpMid: '0', sdpMLineIndex: 0 } } });
  }
  await settle();
  t.mock.timers.tick(10_000);
  await settle();
  assert.equal(toAda.restarts, 0, 'ICE could not have tried what had not arrived: it waits');
  t.mock.timers.tick(10_000); // nothing more came: stuck after all
  await settle();
  assert.equal(toAda.restarts, 1);
});

test('an offer still unanswered after 8 s is sent again, three times, then the link is made anew', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: false }] });
  const [toAda] = FakeRTCPeerConnection.made;
  const offers = () => socket.sentOf('signal').filter((m) => m.data.description?.type === 'offer');
  assert.equal(offers().length, 1);
  t.mock.timers.tick(8_000);
  assert.equal(offers().length, 2, 'the same offer again: its answer may have been lost');
  assert.deepEqual(offers()[1].data, offers()[0].data);
  t.mock.timers.tick(15_999);
  assert.equal(offers().length, 2, 'later repeats wait twice as long');
  t.mock.timers.tick(1);
  assert.equal(offers().length, 3);
  t.mock.timers.tick(16_000);
  assert.equal(offers().length, 4);
  assert.equal(FakeRTCPeerConnection.made.length, 1);
  t.mock.timers.tick(16_000);
  await settle();
  assert.equal(FakeRTCPeerConnection.made.length, 2, 'never answered: a new link, in case theirs is gone');
  assert.equal(warnings.at(-1), `XES link to ${ADA}: made anew, offer unanswered after 3 repeats`);
  assert.equal(toAda.signalingState, 'closed');
  assert.equal(offers().length, 5, 'the new link offers at once');
});

test('the waits stretch to twice the slowest of the page\'s last round trips', () => {
  const pace = new SignalPace();
  assert.equal(pace.wait(8_000), 8_000, 'no round trip yet: the wait as it is');
  pace.observe(50);
  assert.equal(pace.wait(8_000), 8_000, 'a sound machine: the wait as it is');
  pace.observe(7_000);
  assert.equal(pace.wait(8_000), 14_000);
  for (let i = 1; i < PACE_SAMPLES; i += 1) pace.observe(100);
  assert.equal(pace.wait(8_000), 14_000, 'still among the last round trips');
  pace.observe(100);
  assert.equal(pace.wait(8_000), 8_000, 'the page caught up: the slow one is forgotten');
});

/** performance.now() that moves with the mocked timers: `advance(ms)` moves both. */
function mockClock(t) {
  let now = 1_000;
  t.mock.method(performance, 'now', () => now);
  t.mock.timers.enable({ apis: ['setTimeout'] });
  return (ms) => {
    now += ms;
    t.mock.timers.tick(ms);
  };
}

test('on a page whose answers come slowly, offers are repeated and links judged stuck later', async (t) => {
  const advance = mockClock(t);
  const peers = [{ id: ADA, name: 'Ada', polite: false }, { id: BOB, name: 'Bob', polite: false }];
  const { socket } = await inRoom(t, { peers });
  const [toAda, toBob] = FakeRTCPeerConnection.made;
  const offersTo = (peer) => socket.sentOf('signal')
    .filter((m) => m.to === peer && m.data.description?.type === 'offer');
  advance(7_000);
  answerFrom(socket, ADA, toAda, 10); // a round trip of 7 s: a starved page
  await settle();
  toAda.iceConnectionState = 'checking';
  advance(1_000);
  assert.equal(offersTo(BOB).length, 2, 'the other link, unanswered for 8 s, repeats as before');
  // Ada's link, still checking, is judged two round trips (14 s) after its answer, not 10 s.
  advance(12_999);
  await settle();
  assert.equal(toAda.restarts, 0);
  advance(1);
  await settle();
  assert.equal(toAda.restarts, 1, 'restarted 14 s after its answer');
  // Bob's next repeat waits twice two round trips (28 s), not 16 s.
  advance(14_999);
  assert.equal(offersTo(BOB).length, 2);
  advance(1);
  assert.equal(offersTo(BOB).length, 3);
  assert.equal(toBob.signalingState, 'have-local-offer');
});

test('a link whose transport is up is left alone, however late the page reads that it is', async (t) => {
  const { toAda } = await checkingAfterAnswer(t);
  toAda.iceConnectionState = 'connected'; // ICE through, "connecting" as far as the page has read
  toAda.connectionState = 'connecting';
  toAda.stats = new Map([['T01', { type: 'transport', dtlsState: 'connected', bytesReceived: 10 }]]);
  for (let look = 0; look < 4; look += 1) {
    t.mock.timers.tick(10_000);
    await settle();
  }
  assert.equal(toAda.restarts, 0);
  assert.equal(FakeRTCPeerConnection.made.length, 1, 'not made anew');
  assert.notEqual(toAda.signalingState, 'closed');
});

test('a second answer to a repeated offer changes nothing', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: false }] });
  const [toAda] = FakeRTCPeerConnection.made;
  t.mock.timers.tick(8_000);
  answerFrom(socket, ADA, toAda, 10);
  await settle();
  assert.equal(toAda.signalingState, 'stable');
  const applied = toAda.remoteDescription;
  answerFrom(socket, ADA, toAda, 11);
  await settle();
  assert.equal(toAda.signalingState, 'stable');
  assert.equal(toAda.remoteDescription, applied, 'the answer to the repeated offer changes nothing');
});

test('an answer says which offer it answers; a late answer to an earlier offer is ignored', async (t) => {
  const { call, socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: false }] });
  const [toAda] = FakeRTCPeerConnection.made;
  const firstOffer = toAda.localDescription.sdp;
  const answerTo = (offerSdp, ufrag) => ({
    description: { type: 'answer', sdp: `v=0\r\na=ice-ufrag:${ufrag}\r\n` },
    answers: /a=ice-ufrag:(\S+)/.exec(offerSdp)[1],
  });
  // Our first offer is still unanswered when we make another one (an ICE restart).
  toAda.restartIce();
  toAda.dispatchEvent(new Event('negotiationneeded'));
  toAda.signalingState = 'stable';
  toAda.dispatchEvent(new Event('negotiationneeded'));
  await settle();
  assert.notEqual(toAda.localDescription.sdp, firstOffer);
  socket.serverSends({ type: 'signal', from: ADA, data: answerTo(firstOffer, 'old'), seq: 10 });
  await settle();
  assert.equal(toAda.signalingState, 'have-local-offer', 'the late answer answers nothing we have out');
  socket.serverSends({ type: 'signal', from: ADA, data: answerTo(toAda.localDescription.sdp, 'new'), seq: 11 });
  await settle();
  assert.equal(toAda.signalingState, 'stable');
  assert.match(toAda.remoteDescription.sdp, /ice-ufrag:new/);
  // Candidates the peer gathered for its earlier answer are dropped without an error.
  toAda.addIceCandidate = async () => { throw new Error('unknown ufrag'); };
  socket.serverSends({ type: 'signal', from: ADA, seq: 12,
    data: { candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host ufrag old', sdpMid: '0', sdpMLineIndex: 0 } } });
  await settle();
  assert.equal(call.alerts.size, 0, 'no alert: nothing went wrong');
});

test('a late answer to our first offer is not taken for the answer to the second, which adds the data channel', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { call, socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: false }] });
  const [pc] = FakeRTCPeerConnection.made;
  const ufrag = /a=ice-ufrag:(\S+)/.exec(pc.localDescription.sdp)[1];
  const answer = (sections) => ({ description: { type: 'answer', sdp: ['v=0', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0',
    'a=ice-ufrag:theirs', ...(sections > 1 ? ['m=application 9 UDP/DTLS/SCTP webrtc-datachannel', 'a=mid:1'] : []), ''].join('\r\n') },
  answers: ufrag });
  t.mock.timers.tick(8_000); // no answer yet: the first offer goes again
  socket.serverSends({ type: 'signal', from: ADA, data: answer(1) });
  await settle();
  pc.connect();
  const voice = new FakeTrack('audio', 'Ada', { muted: true });
  pc.receiveTrack(new FakeMediaStream([voice]));
  voice.unmute();
  t.mock.timers.tick(SETTLE_GRACE_MS);
  await settle();
  assert.equal(pc.signalingState, 'have-local-offer', 'the second offer, with the data channel, is out');
  assert.match(pc.localDescription.sdp, /a=ice-ufrag:/);
  // Ada's answer to the repeat of our first offer arrives now: same ICE credentials, one section.
  socket.serverSends({ type: 'signal', from: ADA, data: answer(1) });
  await settle();
  assert.equal(pc.signalingState, 'have-local-offer', 'it answers an earlier offer: ignored');
  assert.equal(call.alerts.size, 0, 'and no error');
  socket.serverSends({ type: 'signal', from: ADA, data: answer(2) });
  await settle();
  assert.equal(pc.signalingState, 'stable', 'the answer to the second offer is taken');
  assert.match(pc.remoteDescription.sdp, /a=mid:1/);
});

test('a repeat of a peer\'s first offer, after its second was answered, is ignored', async (t) => {
  const { call, socket } = await inRoom(t);
  socket.serverSends({ type: 'peer-joined', peer: { id: CAROL, name: 'Carol', polite: true } });
  const audio = 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:carol\r\n';
  const withChannel = `${audio}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n`;
  socket.serverSends({ type: 'signal', from: CAROL, data: { description: { type: 'offer', sdp: audio } } });
  await settle();
  socket.serverSends({ type: 'signal', from: CAROL, data: { description: { type: 'offer', sdp: withChannel } } });
  await settle();
  const [pc] = FakeRTCPeerConnection.made;
  let renegotiated = 0;
  const setRemote = pc.setRemoteDescription.bind(pc);
  pc.setRemoteDescription = async (description) => { renegotiated += 1; return setRemote(description); };
  socket.serverSends({ type: 'signal', from: CAROL, data: { description: { type: 'offer', sdp: audio } } });
  await settle();
  assert.equal(renegotiated, 0, 'an offer that drops a section answers nothing now');
  assert.equal(pc.remoteDescription.sdp, withChannel);
  assert.equal(call.alerts.size, 0);
});

/** Bob joins after us and offers (ufrag "theirs"): returns his offer, already answered. */
async function offerFromBob(socket) {
  socket.serverSends({ type: 'peer-joined', peer: { id: BOB, name: 'Bob', polite: true }, seq: 10 });
  await settle();
  const offer = { type: 'offer', sdp: 'v=0\r\na=ice-ufrag:theirs\r\n' };
  socket.serverSends({ type: 'signal', from: BOB, data: { description: offer }, seq: 11 });
  await settle();
  return offer;
}

test('we answer with the ufrag of the offer we answer', async (t) => {
  const { socket } = await inRoom(t, { peers: [] });
  await offerFromBob(socket);
  const answer = socket.sentOf('signal').find((m) => m.to === BOB && m.data.description?.type === 'answer');
  assert.equal(answer.data.answers, 'theirs');
});

test('a repeated offer gets the answer we made again, without a renegotiation', async (t) => {
  const { socket } = await inRoom(t, { peers: [] });
  const offer = await offerFromBob(socket);
  const fromBob = FakeRTCPeerConnection.made.at(-1);
  let renegotiated = 0;
  const setRemote = fromBob.setRemoteDescription.bind(fromBob);
  fromBob.setRemoteDescription = async (description) => { renegotiated += 1; return setRemote(description); };
  socket.serverSends({ type: 'signal', from: BOB, data: { description: offer }, seq: 12 }); // a repeat
  await settle();
  const answers = socket.sentOf('signal').filter((m) => m.to === BOB && m.data.description?.type === 'answer');
  assert.equal(answers.length, 2, 'answered again');
  assert.deepEqual(answers[1].data, answers[0].data, 'with the very same answer');
  assert.equal(renegotiated, 0, 'and no renegotiation');
  const restart = { type: 'offer', sdp: 'v=0\r\na=ice-ufrag:restarted\r\n' };
  socket.serverSends({ type: 'signal', from: BOB, data: { description: restart }, seq: 13 }); // a new offer
  await settle();
  assert.equal(renegotiated, 1, 'a new offer is negotiated as ever');
});

test('fresh TURN credentials are asked for at 80% of their lifetime and reach every link', async (t) => {
  let nowMs = 1_000_000;
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { call, socket } = await inRoom(t, {
    peers: [{ id: ADA, name: 'Ada', polite: true }],
    ice_servers: [{ urls: 'turn:turn.test:3478', username: 'u', credential: 'c' }],
    ice_expires_at: (nowMs + 100_000) / 1000,
  }, { now: () => nowMs });
  t.mock.timers.tick(79_000);
  assert.deepEqual(socket.sentOf('ice-refresh'), []);
  t.mock.timers.tick(1_000);
  assert.deepEqual(socket.sentOf('ice-refresh'), [{ type: 'ice-refresh' }]);
  const fresh = [{ urls: 'turn:turn.test:3478', username: 'u2', credential: 'c2' }];
  nowMs += 80_000;
  socket.serverSends({ type: 'ice-servers', ice_servers: fresh, ice_expires_at: (nowMs + 100_000) / 1000 });
  assert.deepEqual(FakeRTCPeerConnection.made[0].configuration.iceServers, fresh);
  assert.deepEqual(call.iceServers, fresh);
});

test('reconnects back off with jitter, capped while a session may resume; 1012 comes back at once', () => {
  const low = new Signalling('ws://xes.test/ws', { random: () => 0 });
  const high = new Signalling('ws://xes.test/ws', { random: () => 0.999999 });
  low.session = { peer: ME, token: tokenOf(ME) };
  high.session = low.session;
  const lows = [0, 1, 2, 3, 4].map(() => low.retryDelay(1006));
  const highs = [0, 1, 2, 3, 4].map(() => Math.round(high.retryDelay(1006)));
  assert.deepEqual(lows, [250, 500, 1000, 1000, 1000]);
  assert.deepEqual(highs, [500, 1000, 2000, 2000, 2000]);
  assert.equal(low.retryDelay(1012), 0, 'a server restarting on purpose kept our session');
  low.session = null;
  assert.equal(low.retryDelay(1006), 7500, 'no session to resume: back off further');
});

/** In a room with Ada and Bob, both links connected and their data channels open. */
async function withOpenChannels(t) {
  const context = await inRoom(t, {
    peers: [{ id: ADA, name: 'Ada', polite: true }, { id: BOB, name: 'Bob', polite: true }],
  });
  const announced = [];
  context.call.addEventListener('announce', ({ detail }) => announced.push(detail));
  for (const peer of [ADA, BOB]) {
    context.socket.serverSends({ type: 'signal', from: peer, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  }
  await settle();
  for (const pc of FakeRTCPeerConnection.made) {
    pc.connect();
    pc.channels[0].open();
    pc.receiveTrack(); // the peer's voice arrives: the link is settled
  }
  return { ...context, announced, channels: FakeRTCPeerConnection.made.map((pc) => pc.channels[0]) };
}

test('chat goes to every member over their own data channel, never to the server', async (t) => {
  const { call, socket, channels } = await withOpenChannels(t);
  const sentToServer = socket.sent.length;
  assert.deepEqual(call.sendChat('  hello  '), { ok: true });
  for (const channel of channels) assert.deepEqual(channel.sent.at(-1), { type: 'chat', text: 'hello' });
  assert.equal(socket.sent.length, sentToServer, 'nothing went to the server');
  assert.deepEqual(call.messages.map(({ name, text, self }) => [name, text, self]), [['Me', 'hello', true]]);
  assert.equal(call.sendChat('   ').ok, false);
  assert.equal(call.sendChat('x'.repeat(4001)).ok, false);
});

test('a received message shows with its sender and is announced; junk is ignored', async (t) => {
  const { call, channels, announced } = await withOpenChannels(t);
  channels[0].receive({ type: 'chat', text: 'hi from Ada' });
  channels[1].receive({ type: 'chat', text: 42 });
  channels[1].receive('not json');
  assert.deepEqual(call.messages.map(({ from, name, text }) => [from, name, text]), [[ADA, 'Ada', 'hi from Ada']]);
  // Announced by the chat history itself (a role=log live region), not a second time.
  assert.ok(!announced.some((text) => text.includes('hi from Ada')));
});

test('our mute is told to every link, and theirs is shown and announced on change', async (t) => {
  const { call, channels, announced } = await withOpenChannels(t);
  // The channel also carries the safety codes' messages (verify.js): look at mute only.
  const told = (channel) => channel.sent.filter((message) => message.type === 'mute').map((m) => m.muted);
  for (const channel of channels) assert.deepEqual(told(channel), [false]);
  call.toggleMute();
  for (const channel of channels) assert.deepEqual(told(channel), [false, true]);
  call.holdToTalk('space', true);
  for (const channel of channels) assert.deepEqual(told(channel), [false, true, false]);
  call.holdToTalk('space', false);
  channels[1].receive({ type: 'mute', muted: false });
  assert.equal(call.peers.get(BOB).muted, false);
  assert.ok(!announced.some((text) => text.startsWith('Bob')), 'a first state is not news');
  channels[1].receive({ type: 'mute', muted: true });
  assert.equal(call.peers.get(BOB).muted, true);
  assert.ok(announced.includes('Bob muted their microphone.'));
});

test('joins, leaves and host changes are announced by name; we are told where we are', async (t) => {
  const { call, socket, announced } = await withOpenChannels(t);
  socket.serverSends({ type: 'peer-joined', peer: { id: CAROL, name: 'Carol', polite: false } });
  socket.serverSends({ type: 'peer-left', peer: ADA, reason: 'left' });
  socket.serverSends({ type: 'host', peer: BOB });
  socket.serverSends({ type: 'host', peer: ME });
  assert.deepEqual(announced, ['Carol joined.', 'Ada left.', 'Bob is now the host.', 'You are now the host.']);
  assert.equal(call.isHost, true);
});

test('the Opus bitrate per link follows the number of people', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { socket } = await withOpenChannels(t);
  t.mock.timers.tick(SETTLE_GRACE_MS); // the voices flow: the links are settled
  await settle();
  const bitrates = () => FakeRTCPeerConnection.made.filter((pc) => pc.connectionState !== 'closed')
    .map((pc) => pc.senders[0].maxBitrate);
  assert.deepEqual(bitrates(), [40_000, 40_000]);
  for (const [index, id] of ['D', 'E', 'F', 'G', 'H'].entries()) {
    socket.serverSends({ type: 'peer-joined', peer: { id: id.repeat(22), name: id, polite: false } });
    socket.serverSends({ type: 'signal', from: id.repeat(22), data: { description: { type: 'offer', sdp: 'v=0\r\n' } } });
    const pc = FakeRTCPeerConnection.made.at(-1);
    await settle();
    pc.connect();
    pc.receiveTrack();
    t.mock.timers.tick(SETTLE_GRACE_MS);
    await settle();
    assert.equal(bitrates().length, 3 + index);
  }
  assert.deepEqual(new Set(bitrates()), new Set([24_000]), '8 people: 24 kbit/s on each of 7 links');
  socket.serverSends({ type: 'peer-left', peer: 'H'.repeat(22), reason: 'left' });
  await settle();
  assert.deepEqual(new Set(bitrates()), new Set([28_000]));
});

test('the bitrate is set once the voice arrives: not while offering, connecting or answered', async (t) => {
  const { call, socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: true }] });
  const settled = [];
  call.addEventListener('linksettled', ({ detail }) => settled.push(detail.peerId));
  const [pc] = FakeRTCPeerConnection.made;
  await settle();
  assert.equal(pc.localDescription.type, 'offer');
  assert.equal(pc.senders[0].parameterReads, 0, 'no getParameters while the first offer is made');
  socket.serverSends({ type: 'signal', from: ADA, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  const voice = new FakeTrack('audio', 'Ada', { muted: true });
  pc.receiveTrack(new FakeMediaStream([voice])); // at the answer, before any packet
  pc.connect();
  pc.channels[0].open();
  await settle();
  assert.equal(pc.senders[0].parameterReads, 0, 'nothing asked while the link comes up');
  assert.deepEqual(settled, []);
  voice.unmute(); // the first packets
  await new Promise((resolve) => setTimeout(resolve, SETTLE_GRACE_MS - 100));
  assert.equal(pc.senders[0].parameterReads, 0, 'nor in the first moments of the voice');
  await new Promise((resolve) => setTimeout(resolve, 150));
  await settle();
  assert.equal(pc.senders[0].maxBitrate, 40_000, 'capped once the voice flows');
  assert.deepEqual(settled, [ADA]);
  const reads = pc.senders[0].parameterReads;
  pc.connect();
  await settle();
  assert.equal(pc.senders[0].parameterReads, reads, 'connecting again does not ask again');
  assert.equal(pc.configuration.bundlePolicy, 'max-bundle', 'audio and data on one transport');
});

test('a link whose peer sends no audio settles a second after it connected', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { call, socket } = await inRoom(t, { peers: [{ id: ADA, name: 'Ada', polite: true }] });
  const settled = [];
  call.addEventListener('linksettled', ({ detail }) => settled.push(detail.peerId));
  const [pc] = FakeRTCPeerConnection.made;
  socket.serverSends({ type: 'signal', from: ADA, data: { description: { type: 'answer', sdp: 'v=0\r\n' } } });
  await settle();
  pc.connect();
  t.mock.timers.tick(SETTLE_FALLBACK_MS - 1);
  await settle();
  assert.deepEqual(settled, []);
  assert.equal(pc.senders[0].parameterReads, 0);
  t.mock.timers.tick(1);
  await settle();
  assert.deepEqual(settled, [ADA]);
  assert.equal(pc.senders[0].maxBitrate, 40_000);
});

test('a new microphone replaces the track on every link without renegotiating', async (t) => {
  const { call, socket, microphone } = await withOpenChannels(t);
  const offers = socket.sentOf('signal').length;
  const [old] = microphone.getAudioTracks();
  const fresh = new FakeTrack('audio', 'second microphone');
  call.toggleMute();
  assert.equal(await call.switchMicrophone(async () => new FakeMediaStream([fresh])), true);
  for (const pc of FakeRTCPeerConnection.made) assert.equal(pc.senders[0].track, fresh);
  assert.equal(socket.sentOf('signal').length, offers, 'no new offer');
  assert.equal(old.readyState, 'ended');
  assert.deepEqual(call.localStream.getAudioTracks(), [fresh]);
  assert.equal(fresh.enabled, false, 'still muted');
  const refusal = new MicrophoneError('missing', 'No microphone was found.');
  assert.equal(await call.switchMicrophone(async () => { throw refusal; }), false);
  assert.equal(call.alerts.get('microphone'), 'No microphone was found.');
  assert.deepEqual(call.localStream.getAudioTracks(), [fresh], 'the working one stays');
});

test('after a stranger call: rate once, report with a reason, and a cooldown says the time left', async (t) => {
  const { call } = makeCall(t, { now: () => 1_800_000_000_000 });
  const finding = call.findStranger('Me', { tags: [], language: '' });
  await settle();
  const socket = FakeWebSocket.latest;
  socket.open(ME);
  await finding;
  socket.serverSends(joinedMessage({ match: true, host: ADA, peers: [{ id: ADA, name: 'Ada', polite: true }] }));
  assert.equal(call.feedback.stranger.name, 'Ada');
  call.rateStranger(false);
  assert.deepEqual(socket.sentOf('rate'), [{ type: 'rate', peer: ADA, good: false }]);
  assert.equal(call.feedback.rated, true);
  socket.serverSends({ type: 'noted', ref: 'rate' });
  assert.match(call.feedback.said, /rating was recorded/);
  call.toggleReporting();
  assert.equal(call.feedback.reporting, true);
  call.reportStranger('under-18', 'said they are 13');
  assert.deepEqual(socket.sentOf('report'),
    [{ type: 'report', peer: ADA, reason: 'under-18', text: 'said they are 13' }]);
  assert.deepEqual([call.feedback.reported, call.feedback.reporting], [true, false]);
  call.next();
  socket.serverSends({ type: 'error', code: 'cooldown', message: 'in 59 min', ref: 'next', retry_after: 3540 });
  assert.equal(call.phase, Phase.IDLE);
  assert.deepEqual(socket.sentOf('stop'), [{ type: 'stop' }], 'the server still had us in the match room');
  assert.match(call.alerts.get('match-refused'), /Time left: 59 min/);
  assert.equal(call.feedback.stranger.id, ADA, 'the last stranger can still be blocked or reported');
});
