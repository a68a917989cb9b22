// A minimal WebRTC voice peer for bench/bare_relay.py. The newcomer offers to everyone already in
// the room (the XES rule, so there is no glare); candidates trickle; signalling per peer runs on
// a promise chain so that descriptions and candidates are applied in order.
const room = new URLSearchParams(location.search).get('room');
const peers = new Map(); // id -> {pc, chain, pending: candidates before the remote description}
const streams = new Map();
let ws = null;
let me = null;
let iceServers = [];
let policy = 'all';
let mic = null;

// The benchmark reads remote streams the same way it reads XES's page.
window.xes = Object.freeze({
  get me() { return me ? { id: me } : null; },
  remoteStreams: () => streams,
});

function send(message) { ws.send(JSON.stringify(message)); }

function link(id) {
  let peer = peers.get(id);
  if (peer) return peer;
  const relay = document.getElementById('relay-only').checked || policy === 'relay';
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relay ? 'relay' : 'all' });
  for (const track of mic.getAudioTracks()) pc.addTrack(track, mic);
  pc.onicecandidate = (event) => send({
    type: 'signal', to: id, data: { candidate: event.candidate ? event.candidate.toJSON() : null },
  });
  pc.ontrack = (event) => {
    const stream = event.streams[0] || new MediaStream([event.track]);
    // Chromium delivers no audio to WebAudio unless the stream also plays in an element.
    const sink = document.createElement('audio');
    sink.muted = true;
    sink.autoplay = true;
    sink.srcObject = stream;
    document.body.appendChild(sink);
    streams.set(id, stream);
  };
  peer = { pc, chain: Promise.resolve(), pending: [] };
  peers.set(id, peer);
  return peer;
}

function onSignal(from, data) {
  const peer = link(from);
  peer.chain = peer.chain.then(async () => {
    const { pc } = peer;
    if (data.description) {
      await pc.setRemoteDescription(data.description);
      if (data.description.type === 'offer') {
        await pc.setLocalDescription();
        send({ type: 'signal', to: from, data: { description: pc.localDescription.toJSON() } });
      }
      for (const candidate of peer.pending.splice(0)) await pc.addIceCandidate(candidate);
    } else if ('candidate' in data) {
      const candidate = data.candidate || undefined; // null: end of candidates
      if (pc.remoteDescription) await pc.addIceCandidate(candidate);
      else peer.pending.push(candidate);
    }
  }).catch((error) => console.error('signal', error));
}

function onMessage(message) {
  if (message.type === 'joined') {
    me = message.you;
    iceServers = message.ice_servers || [];
    policy = message.ice_transport_policy || 'all';
    for (const other of message.peers) {
      const peer = link(other.id);
      peer.chain = peer.chain.then(async () => {
        await peer.pc.setLocalDescription();
        send({ type: 'signal', to: other.id, data: { description: peer.pc.localDescription.toJSON() } });
      });
    }
  } else if (message.type === 'signal') {
    onSignal(message.from, message.data);
  } else if (message.type === 'peer-left') {
    const peer = peers.get(message.peer);
    if (peer) peer.pc.close();
    peers.delete(message.peer);
    streams.delete(message.peer);
  }
}

async function join(event) {
  event.preventDefault();
  mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video: false,
  });
  ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  await new Promise((resolve) => { ws.onopen = resolve; });
  send({ type: 'join', room, name: document.getElementById('display-name').value });
}

document.getElementById('join-form').addEventListener('submit', join);
