// media.js: each remote voice plays from its element up to 100 %, and through Web Audio only
// where an element cannot (above 100 %, and at 0 % for its speaking ring).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { RemoteVolumes, needsWebAudio } from '../../src/xes/web/media.js';

/** An AudioNode that records what it is connected to. */
class FakeNode {
  constructor(context, kind) {
    this.context = context;
    this.kind = kind;
    this.outputs = new Set();
    this.gain = { value: 1 };
    context.nodes.push(this);
  }

  connect(node) {
    this.outputs.add(node);
    return node;
  }

  disconnect(node) {
    if (node === undefined) this.outputs.clear();
    else if (!this.outputs.delete(node)) throw new Error('InvalidAccessError: not connected');
  }
}

class FakeContext {
  constructor() {
    this.nodes = [];
    this.state = 'running';
    this.sinkIds = [];
    this.destination = new FakeNode(this, 'destination');
  }

  async setSinkId(id) {
    this.sinkIds.push(id);
  }

  async resume() {
    this.state = 'running';
  }

  createMediaStreamSource(stream) {
    const node = new FakeNode(this, 'source');
    node.stream = stream;
    return node;
  }

  createGain() {
    return new FakeNode(this, 'gain');
  }

  createAnalyser() {
    const node = new FakeNode(this, 'analyser');
    node.fftSize = 2048;
    return node;
  }

  createMediaStreamDestination() {
    const node = new FakeNode(this, 'tap');
    node.stream = { tapped: true };
    return node;
  }

  /** Nodes of a kind still connected to something, or something connected to them. */
  live(kind) {
    return this.nodes.filter((node) => node.kind === kind &&
      (node.outputs.size > 0 || this.nodes.some((other) => other.outputs.has(node))));
  }
}

function fakeSink() {
  return {
    volume: 1, muted: false, paused: false, sinkIds: [],
    async setSinkId(id) {
      this.sinkIds.push(id);
    },
  };
}

const stream = { getAudioTracks: () => [{}] };

function setUp() {
  const context = new FakeContext();
  return { context, volumes: new RemoteVolumes(() => context) };
}

test('up to 100 % a voice plays from its element at that volume, and no AudioContext is made', () => {
  let made = 0;
  const volumes = new RemoteVolumes(() => {
    made += 1;
    return new FakeContext();
  });
  const sink = fakeSink();
  volumes.attach('ada', stream, sink, 100);
  assert.deepEqual([sink.muted, sink.volume], [false, 1]);
  volumes.setVolume('ada', 35);
  assert.deepEqual([sink.muted, sink.volume], [false, 0.35]);
  assert.equal(volumes.source('ada'), null);
  assert.equal(volumes.elementVolume('ada'), 0.35);
  assert.equal(made, 0);
  volumes.setVolume('ada', 120);
  assert.equal(made, 1);
});

test('above 100 % the element is muted and a GainNode plays the voice, until it comes back down', () => {
  const { context, volumes } = setUp();
  const sink = fakeSink();
  volumes.attach('ada', stream, sink, 100);
  volumes.setVolume('ada', 150);
  assert.equal(sink.muted, true);
  const [gain] = context.live('gain');
  assert.equal(gain.gain.value, 1.5);
  assert.ok(gain.outputs.has(context.destination));
  assert.ok(volumes.source('ada').outputs.has(gain), 'the source a meter can share feeds the gain');
  assert.equal(volumes.elementVolume('ada'), null);
  volumes.setVolume('ada', 200);
  assert.equal(context.live('gain').length, 1, 'the same graph, turned up');
  volumes.setVolume('ada', 80);
  assert.deepEqual([sink.muted, sink.volume], [false, 0.8]);
  assert.deepEqual(context.live('gain'), []);
  assert.deepEqual(context.live('source'), []);
});

test('at 0 % the voice goes through Web Audio at gain 0, where its ring can still be measured', () => {
  assert.deepEqual([0, 1, 50, 100, 101, 200].map(needsWebAudio), [true, false, false, false, true, true]);
  const { context, volumes } = setUp();
  const sink = fakeSink();
  volumes.attach('ada', stream, sink, 0);
  assert.equal(sink.muted, true);
  assert.equal(context.live('gain')[0].gain.value, 0);
  assert.notEqual(volumes.source('ada'), null);
});

test('a voice without audio (a text-only link) never reaches Web Audio, nor a test\'s tap', () => {
  const { context, volumes } = setUp();
  volumes.attach('ada', { getAudioTracks: () => [] }, fakeSink(), 200);
  assert.equal(context.nodes.length, 1);
  assert.deepEqual([...volumes.heardStreams().keys()], []);
});

test('what a test hears follows the element volume, the gain, and the path switching between them', () => {
  const { context, volumes } = setUp();
  const sink = fakeSink();
  volumes.attach('ada', stream, sink, 50);
  const heard = volumes.heardStreams();
  assert.deepEqual(heard.get('ada'), { tapped: true });
  const tapGain = () => context.live('gain').find((node) => [...node.outputs].some((out) => out.kind === 'tap'));
  assert.equal(tapGain().gain.value, 0.5, 'the element plays at half');
  volumes.setVolume('ada', 180);
  // After the voice's own GainNode: the tap adds nothing.
  assert.equal(tapGain().gain.value, 1);
  const [voiceGain] = context.live('gain').filter((node) => node.outputs.has(context.destination));
  assert.ok(voiceGain.outputs.has(tapGain()), 'the tap follows the gain that feeds the speakers');
  volumes.setVolume('ada', 100);
  assert.equal(tapGain().gain.value, 1);
  assert.deepEqual(context.live('gain').filter((node) => node.outputs.has(context.destination)), []);
  volumes.detach('ada');
  assert.deepEqual(context.live('gain'), []);
  assert.deepEqual(context.live('source'), []);
});

test('the chosen speaker reaches every element and the voices\' context, and what comes later', async () => {
  const { context, volumes } = setUp();
  const first = fakeSink();
  volumes.attach('ada', stream, first, 100);
  await volumes.setSpeaker('usb');
  const later = fakeSink();
  volumes.attach('bob', stream, later, 100);
  assert.deepEqual(first.sinkIds, ['usb']);
  assert.deepEqual(later.sinkIds, ['usb']);
  volumes.setVolume('bob', 150); // the context is made now, and told where to play
  assert.deepEqual(context.sinkIds, ['usb']);
  await volumes.setSpeaker('');
  assert.deepEqual(context.sinkIds, ['usb', '']);
});

test('a paused element or a suspended context is a voice nobody hears yet', () => {
  const { context, volumes } = setUp();
  const sink = fakeSink();
  volumes.attach('ada', stream, sink, 100);
  assert.equal(volumes.suspended(), false);
  sink.paused = true;
  assert.equal(volumes.suspended(), true);
  sink.paused = false;
  volumes.setVolume('ada', 150);
  context.state = 'suspended';
  assert.equal(volumes.suspended(), true);
});
