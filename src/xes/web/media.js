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
 * Speaking detection: one AudioContext, one AnalyserNode per stream, RMS level on demand.
 * A remote stream only reaches WebAudio in Chromium once it also plays in an <audio> element.
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
    this.measure(key, this.audioContext().createMediaStreamSource(stream), true);
  }

  /**
   * Start measuring what a node of this page's AudioContext carries: a remote voice's source,
   * shared with its volume control (RemoteVolumes#source). One MediaStreamAudioSourceNode per
   * remote stream instead of two: each is a consumer of the decoded track, with its own buffer,
   * on the audio thread, which in a full room is seven per page.
   * @param {string} key
   * @param {AudioNode} node
   */
  attachNode(key, node) {
    this.detach(key);
    this.measure(key, node, false);
  }

  measure(key, source, ownsSource) {
    const analyser = this.audioContext().createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    this.meters.set(key, { source, analyser, ownsSource, samples: new Float32Array(analyser.fftSize) });
  }

  /**
   * Make the page's AudioContext ahead of the call, suspended. Its constructor holds the main
   * thread for tens of ms (it asks the audio service for the output's parameters): made at load,
   * that is not while a join waits for its answer. Without the user's gesture yet, a browser
   * makes it suspended anyway; suspended, it renders nothing until the join resumes it.
   */
  prepare() {
    if (this.context !== null) return;
    this.context = new AudioContext();
    this.context.suspend().catch(() => {});
  }

  /**
   * The one AudioContext of the page (created on first use, or made ready by `prepare`), running,
   * shared with the volume controls.
   * @returns {AudioContext}
   */
  audioContext() {
    if (this.context === null) this.context = new AudioContext();
    if (this.context.state === 'suspended') this.context.resume().catch(() => {});
    return this.context;
  }

  /** @param {string} key */
  detach(key) {
    const meter = this.meters.get(key);
    if (meter === undefined) return;
    this.meters.delete(key);
    if (meter.ownsSource) {
      meter.source.disconnect();
      return;
    }
    try {
      meter.source.disconnect(meter.analyser);
    } catch {
      // The volume control already disconnected the shared source from everything.
    }
  }

  /**
   * Current level of a stream, in dBFS (-Infinity for silence or an unknown key).
   * @param {string} key
   * @returns {number}
   */
  level(key) {
    const meter = this.meters.get(key);
    if (meter === undefined) return -Infinity;
    meter.analyser.getFloatTimeDomainData(meter.samples);
    let sum = 0;
    for (const sample of meter.samples) sum += sample * sample;
    const rms = Math.sqrt(sum / meter.samples.length);
    return rms > 0 ? 20 * Math.log10(rms) : -Infinity;
  }

  /** Stop every meter and the AudioContext. */
  close() {
    for (const key of [...this.meters.keys()]) this.detach(key);
    if (this.context !== null) this.context.close().catch(() => {});
    this.context = null;
  }
}

/** The range of the per-person volume, in percent (100 is as received). */
export const VOLUME_MIN = 0;
export const VOLUME_MAX = 200;
export const VOLUME_DEFAULT = 100;

/**
 * What we hear of each remote person: their stream → GainNode → the speakers, so each listener
 * sets each voice's loudness (0–200 %) for themselves alone; nothing is sent to anyone.
 *
 * Chromium only feeds a remote WebRTC stream into Web Audio while it is also attached to a
 * media element, so main.js keeps a muted <audio> element per stream; the sound itself comes
 * from this graph (with the element unmuted we would hear everyone twice).
 *
 * Once asked for (`heardStreams`), each gain also feeds a MediaStreamAudioDestinationNode: exactly
 * what goes to the speakers for that person, so a test can measure the volume where it applies.
 * Not before: each tap is one more consumer on the audio thread, seven per page in a full room,
 * for something no person at the page ever listens to.
 */
export class RemoteVolumes {
  /** @param {() => AudioContext} audioContext the page's shared context */
  constructor(audioContext) {
    this.audioContext = audioContext;
    /** @type {Map<string, {source: MediaStreamAudioSourceNode, gain: GainNode, tap: MediaStreamAudioDestinationNode|null}>} */
    this.voices = new Map();
    /** Whether `heardStreams` was asked for: every voice has its tap from then on. */
    this.tapping = false;
  }

  /**
   * Play `stream` under `key` at `percent` (replacing what that key played before).
   * @param {string} key
   * @param {MediaStream} stream
   * @param {number} percent
   */
  attach(key, stream, percent) {
    this.detach(key);
    if (stream.getAudioTracks().length === 0) return;
    const context = this.audioContext();
    const source = context.createMediaStreamSource(stream);
    const gain = context.createGain();
    gain.gain.value = clampVolume(percent) / 100;
    source.connect(gain);
    gain.connect(context.destination);
    const voice = { source, gain, tap: null };
    if (this.tapping) this.tap(voice);
    this.voices.set(key, voice);
  }

  /** @param {{gain: GainNode, tap: MediaStreamAudioDestinationNode|null}} voice */
  tap(voice) {
    if (voice.tap !== null) return;
    voice.tap = this.audioContext().createMediaStreamDestination();
    voice.gain.connect(voice.tap);
  }

  /**
   * The source node playing `key` (for its level meter to share), or null.
   * @param {string} key
   * @returns {MediaStreamAudioSourceNode|null}
   */
  source(key) {
    return this.voices.get(key)?.source ?? null;
  }

  /**
   * @param {string} key
   * @param {number} percent
   */
  setVolume(key, percent) {
    const voice = this.voices.get(key);
    if (voice !== undefined) voice.gain.gain.value = clampVolume(percent) / 100;
  }

  /** @param {string} key */
  detach(key) {
    const voice = this.voices.get(key);
    if (voice === undefined) return;
    voice.source.disconnect();
    voice.gain.disconnect();
    this.voices.delete(key);
  }

  /** Whether the speakers are silent for lack of a user gesture (autoplay policy). */
  suspended() {
    return this.voices.size > 0 && this.audioContext().state !== 'running';
  }

  /**
   * What reaches the speakers, per key, after the gain; voices that start later are tapped too.
   * @returns {Map<string, MediaStream>}
   */
  heardStreams() {
    this.tapping = true;
    for (const voice of this.voices.values()) this.tap(voice);
    return new Map([...this.voices].map(([key, voice]) => [key, voice.tap.stream]));
  }
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
