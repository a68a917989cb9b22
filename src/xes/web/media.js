// The microphone and audio levels. Sinks (<audio> elements) are DOM, so main.js makes them.

/**
 * Why the microphone could not be opened, in words for the person at the page.
 */
export class MicrophoneError extends Error {
  /**
   * @param {'denied'|'missing'|'busy'|'unsupported'|'other'} kind
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.name = 'MicrophoneError';
    this.kind = kind;
  }
}

/**
 * The browser's audio processing, each on unless the user turned it off ("Audio settings"):
 * real people talk over speakers, and without echo cancellation everyone hears themselves.
 */
export const PROCESSING_DEFAULTS = Object.freeze({
  echoCancellation: true, noiseSuppression: true, autoGainControl: true,
});

/**
 * Open the microphone.
 * @param {{deviceId?: string|null, echoCancellation?: boolean, noiseSuppression?: boolean,
 *          autoGainControl?: boolean}} [choice] a device from enumerateDevices (none: the
 *   default one) and the processing wanted
 * @returns {Promise<MediaStream>}
 * @throws {MicrophoneError}
 */
export async function openMicrophone(choice = {}) {
  const { deviceId = null, ...processing } = choice;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MicrophoneError(
      'unsupported',
      'This browser cannot use a microphone on this page. Open it over https, in a current browser.',
    );
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: {
        ...PROCESSING_DEFAULTS,
        ...processing,
        ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
      },
      video: false,
    });
  } catch (error) {
    switch (error && error.name) {
      case 'NotAllowedError':
      case 'SecurityError':
        throw new MicrophoneError(
          'denied',
          'Microphone access was denied. To talk, allow the microphone for this site ' +
            '(the icon at the left of the address bar, or your browser\u2019s site settings), ' +
            'then press Join again.',
        );
      case 'NotFoundError':
      case 'OverconstrainedError':
        throw new MicrophoneError('missing', 'No microphone was found. Connect one and press Join again.');
      case 'NotReadableError':
      case 'AbortError':
        throw new MicrophoneError(
          'busy',
          'The microphone could not be started; another app may be using it. Close it and press Join again.',
        );
      default:
        throw new MicrophoneError('other', `The microphone could not be opened (${error}).`);
    }
  }
}

/**
 * Mute or unmute without renegotiating: a disabled track sends silence.
 * @param {MediaStream|null} stream
 * @param {boolean} muted
 */
export function setMuted(stream, muted) {
  if (!stream) return;
  for (const track of stream.getAudioTracks()) track.enabled = !muted;
}

/** Stop the microphone (the browser's recording indicator goes away). */
export function stopStream(stream) {
  if (!stream) return;
  for (const track of stream.getTracks()) track.stop();
}

/**
 * Speaking detection of our own microphone: one AnalyserNode per measured stream, RMS level on
 * demand, in a context of the meters' own that plays nothing (`makeMeterContext`). A remote
 * voice is measured by RemoteVolumes, which knows how it plays.
 */
export class LevelMeters {
  constructor() {
    this.context = null;
    /** @type {Map<string, {source: MediaStreamAudioSourceNode, analyser: AnalyserNode, samples: Float32Array}>} */
    this.meters = new Map();
  }

  /**
   * Start measuring a stream under a key (replacing what that key measured before).
   * @param {string} key
   * @param {MediaStream} stream
   */
  attach(key, stream) {
    this.detach(key);
    if (stream.getAudioTracks().length === 0) return;
    const source = this.audioContext().createMediaStreamSource(stream);
    this.meters.set(key, { source, ...analyse(source) });
  }

  /**
   * Make the meters' AudioContext ahead of the call, suspended. Its constructor holds the main
   * thread for tens of ms (it asks the audio service for the output's parameters): made at load,
   * that is not while a join waits for its answer. Without the user's gesture yet, a browser
   * makes it suspended anyway; suspended, it renders nothing until the join resumes it.
   */
  prepare() {
    if (this.context !== null) return;
    this.context = makeMeterContext();
    this.context.suspend().catch(() => {});
  }

  /**
   * The meters' AudioContext (created on first use, or made ready by `prepare`), running.
   * @returns {AudioContext}
   */
  audioContext() {
    if (this.context === null) this.context = makeMeterContext();
    if (this.context.state === 'suspended') this.context.resume().catch(() => {});
    return this.context;
  }

  /** @param {string} key */
  detach(key) {
    const meter = this.meters.get(key);
    if (meter === undefined) return;
    this.meters.delete(key);
    meter.source.disconnect();
  }

  /**
   * Current level of a stream, in dBFS (-Infinity for silence or an unknown key).
   * @param {string} key
   * @returns {number}
   */
  level(key) {
    const meter = this.meters.get(key);
    return meter === undefined ? -Infinity : rmsDb(meter);
  }

  /** Stop every meter and the AudioContext. */
  close() {
    for (const key of [...this.meters.keys()]) this.detach(key);
    if (this.context !== null) this.context.close().catch(() => {});
    this.context = null;
  }
}

/**
 * An AnalyserNode fed by `source`, with the buffer `rmsDb` reads it into.
 * @param {AudioNode} source
 * @returns {{analyser: AnalyserNode, samples: Float32Array}}
 */
function analyse(source) {
  const analyser = source.context.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  return { analyser, samples: new Float32Array(analyser.fftSize) };
}

/**
 * The current RMS level of what an analyser hears, in dBFS (-Infinity for silence).
 * @param {{analyser: AnalyserNode, samples: Float32Array}} meter
 * @returns {number}
 */
function rmsDb({ analyser, samples }) {
  analyser.getFloatTimeDomainData(samples);
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? 20 * Math.log10(rms) : -Infinity;
}

/**
 * A context that only measures: nothing it carries is heard, so it asks for large buffers
 * ('playback'), and its audio thread wakes rarely. The voices' own context (RemoteVolumes) is a
 * separate, low-latency one, made only if someone's volume needs it. (Without an output device,
 * `sinkId: {type: 'none'}`, Chromium renders the context on a timer thread instead, which cost
 * more than it saved in a full room.)
 * @returns {AudioContext}
 */
function makeMeterContext() {
  return new AudioContext({ latencyHint: 'playback' });
}

/** The range of the per-person volume, in percent (100 is as received). */
export const VOLUME_MIN = 0;
export const VOLUME_MAX = 200;
export const VOLUME_DEFAULT = 100;

/**
 * What we hear of each remote person, at the volume this listener chose for them (0–200 %);
 * nothing is sent to anyone.
 *
 * From 1 to 100 % a voice plays from its own <audio> element at that volume: the way any page
 * plays WebRTC audio, with no work of ours on the audio thread. Each voice routed through Web
 * Audio instead costs its own consumer of the decoded track on the audio thread; in a full room
 * of eight that was a third more of the page's audio rendering (bench/README.md, "The voices
 * through their elements"). So only a voice that an element cannot play goes through an AudioContext
 * (made on first need): above 100 % (an element does not amplify) through a GainNode, and at 0 % too,
 * so that its speaking ring can still be measured (an element at volume 0 delivers silence to
 * the page's statistics). Chromium only feeds a remote stream into Web Audio while an element
 * plays it, so such a voice's element plays on, muted.
 *
 * The elements are main.js's (the DOM is its); this class only sets their `volume`, `muted`
 * and output device, as a player's controls would.
 *
 * Once asked for (`heardStreams`), each voice also feeds a MediaStreamAudioDestinationNode with
 * what goes to the speakers for that person, so a test can measure the volume where it applies:
 * after the GainNode for a voice played through Web Audio, and for one played by its element,
 * the stream at the element's own `volume` (0 when muted), read back from the element.
 */
export class RemoteVolumes {
  /** @param {() => AudioContext} [makeContext] makes the voices' context, on first need */
  constructor(makeContext = () => new AudioContext()) {
    this.makeContext = makeContext;
    /** The voices' AudioContext, made when the first voice needs Web Audio. */
    this.context = null;
    /**
     * @type {Map<string, {stream: MediaStream, sink: HTMLMediaElement, percent: number,
     *   graph: {source: MediaStreamAudioSourceNode, gain: GainNode, analyser: AnalyserNode,
     *     samples: Float32Array}|null,
     *   tap: {input: AudioNode, ownSource: boolean, gain: GainNode,
     *     output: MediaStreamAudioDestinationNode}|null}>}
     */
    this.voices = new Map();
    /** Whether `heardStreams` was asked for: every voice has its tap from then on. */
    this.tapping = false;
    /** The output chosen with `setSpeaker` ('' the default), given to every new element. */
    this.sinkId = '';
  }

  /**
   * Play `stream` under `key` from `sink` (an <audio> element already playing it) at `percent`,
   * replacing what that key played before.
   * @param {string} key
   * @param {MediaStream} stream
   * @param {HTMLMediaElement} sink
   * @param {number} percent
   * @returns {Promise<void>} rejected if the element refused the output chosen with `setSpeaker`
   */
  attach(key, stream, sink, percent) {
    this.detach(key);
    const voice = { stream, sink, percent: clampVolume(percent), graph: null, tap: null };
    this.voices.set(key, voice);
    this.route(voice);
    return this.sinkId === '' ? Promise.resolve() : Promise.resolve(sink.setSinkId?.(this.sinkId));
  }

  /**
   * @param {string} key
   * @param {number} percent
   */
  setVolume(key, percent) {
    const voice = this.voices.get(key);
    if (voice === undefined) return;
    voice.percent = clampVolume(percent);
    this.route(voice);
  }

  /**
   * The voices' AudioContext, running. Made on first need: a room where nobody's volume leaves
   * 1–100 % never runs one. Its output follows the chosen speaker.
   * @returns {AudioContext}
   */
  audioContext() {
    if (this.context === null) {
      this.context = this.makeContext();
      if (this.sinkId !== '') this.context.setSinkId?.(this.sinkId).catch(() => {});
    }
    if (this.context.state === 'suspended') this.context.resume().catch(() => {});
    return this.context;
  }

  /** Put a voice on the path its volume needs (see the class), and its tap after it. */
  route(voice) {
    const throughWebAudio = needsWebAudio(voice.percent) && voice.stream.getAudioTracks().length > 0;
    if (throughWebAudio && voice.graph === null) {
      this.untap(voice);
      const context = this.audioContext();
      const source = context.createMediaStreamSource(voice.stream);
      const gain = context.createGain();
      source.connect(gain);
      gain.connect(context.destination);
      // Its speaking ring is measured here, on the same source, before the gain: a second
      // source would be one more consumer of the decoded track on the audio thread.
      voice.graph = { source, gain, ...analyse(source) };
    } else if (!throughWebAudio && voice.graph !== null) {
      this.untap(voice);
      this.unplug(voice);
    }
    if (voice.graph !== null) {
      voice.graph.gain.gain.value = voice.percent / 100;
      voice.sink.muted = true; // the sound comes from the GainNode
    } else {
      voice.sink.volume = voice.percent / 100;
      voice.sink.muted = false;
    }
    if (this.tapping) this.tap(voice);
  }

  /** @param {{graph: {source: AudioNode, gain: AudioNode}|null}} voice */
  unplug(voice) {
    if (voice.graph === null) return;
    voice.graph.source.disconnect();
    voice.graph.gain.disconnect();
    voice.graph = null;
  }

  /** @param {{stream: MediaStream, sink: HTMLMediaElement, graph: object|null, tap: object|null}} voice */
  tap(voice) {
    if (voice.stream.getAudioTracks().length === 0) return; // nothing is heard, nothing to tap
    if (voice.tap === null) {
      const context = this.audioContext();
      const ownSource = voice.graph === null;
      const input = ownSource ? context.createMediaStreamSource(voice.stream) : voice.graph.gain;
      const gain = context.createGain();
      const output = context.createMediaStreamDestination();
      input.connect(gain);
      gain.connect(output);
      voice.tap = { input, ownSource, gain, output };
    }
    // After the GainNode nothing more applies; an element plays at its own volume, or not at all.
    voice.tap.gain.gain.value = voice.graph !== null ? 1 : (voice.sink.muted ? 0 : voice.sink.volume);
  }

  /** @param {{tap: {input: AudioNode, ownSource: boolean, gain: AudioNode}|null}} voice */
  untap(voice) {
    if (voice.tap === null) return;
    // A tap's own source goes with it; a GainNode it followed still feeds the speakers.
    if (voice.tap.ownSource) voice.tap.input.disconnect();
    else voice.tap.input.disconnect(voice.tap.gain);
    voice.tap.gain.disconnect();
    voice.tap = null;
  }

  /**
   * The source node playing `key` through Web Audio, or null for a voice its element plays.
   * @param {string} key
   * @returns {MediaStreamAudioSourceNode|null}
   */
  source(key) {
    return this.voices.get(key)?.graph?.source ?? null;
  }

  /**
   * The volume `key` plays at from its element (0–1), or null when it plays through Web Audio
   * or is unknown: what the page's statistics measure of that voice is scaled by it.
   * @param {string} key
   * @returns {number|null}
   */
  elementVolume(key) {
    const voice = this.voices.get(key);
    return voice === undefined || voice.graph !== null ? null : voice.percent / 100;
  }

  /**
   * How loud `key`'s voice arrives, in dB, whatever this listener's volume for it: measured on
   * its source in Web Audio, or for a voice its element plays, `playedDb` (what the page's
   * statistics say played, quality.js playedLevel) with the element's volume divided out.
   * @param {string} key
   * @param {number} playedDb
   * @returns {number}
   */
  level(key, playedDb) {
    const voice = this.voices.get(key);
    if (voice === undefined) return -Infinity;
    if (voice.graph !== null) return rmsDb(voice.graph);
    const volume = this.elementVolume(key);
    return volume ? playedDb - 20 * Math.log10(volume) : -Infinity;
  }

  /** @param {string} key */
  detach(key) {
    const voice = this.voices.get(key);
    if (voice === undefined) return;
    this.untap(voice);
    this.unplug(voice);
    this.voices.delete(key);
  }

  /**
   * Send every voice to the output `sinkId` ('' for the default), now and from now on: the
   * elements, and the context that plays the voices above 100 %.
   * @param {string} sinkId
   * @returns {Promise<void>} rejected with the first output that refused
   */
  async setSpeaker(sinkId) {
    this.sinkId = sinkId;
    const outputs = [...this.voices.values()].map((voice) => voice.sink);
    if (this.context !== null) outputs.push(this.context);
    await Promise.all(outputs.map((output) => output.setSinkId?.(sinkId)));
  }

  /** Whether some voice is silent for lack of a user gesture (autoplay policy). */
  suspended() {
    const contextStopped = this.context !== null && this.context.state !== 'running';
    for (const voice of this.voices.values()) {
      if (voice.sink.paused || (voice.graph !== null && contextStopped)) return true;
    }
    return false;
  }

  /**
   * What reaches the speakers, per key, after the volume; voices that start later are tapped too.
   * @returns {Map<string, MediaStream>}
   */
  heardStreams() {
    this.tapping = true;
    for (const voice of this.voices.values()) this.tap(voice);
    return new Map([...this.voices].filter(([, voice]) => voice.tap !== null)
      .map(([key, voice]) => [key, voice.tap.output.stream]));
  }
}

/**
 * Whether a voice at `percent` plays through Web Audio rather than from its element: above
 * 100 % (an element cannot amplify) and at 0 % (its ring is measured there).
 * @param {number} percent
 * @returns {boolean}
 */
export function needsWebAudio(percent) {
  return percent === 0 || percent > 100;
}

/**
 * A volume in percent, whole and within range; anything unreadable is the default.
 * @param {unknown} percent
 * @returns {number}
 */
export function clampVolume(percent) {
  const value = Number(percent);
  if (!Number.isFinite(value)) return VOLUME_DEFAULT;
  return Math.min(VOLUME_MAX, Math.max(VOLUME_MIN, Math.round(value)));
}
