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
 * Open the microphone. Echo cancellation, noise suppression and automatic gain stay on (the
 * browser defaults): real people talk over speakers, and without them everyone hears themselves.
 * @returns {Promise<MediaStream>}
 * @throws {MicrophoneError}
 */
export async function openMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MicrophoneError(
      'unsupported',
      'This browser cannot use a microphone on this page. Open it over https, in a current browser.',
    );
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
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
    // A meter read every ~150 ms needs no low latency. 'playback' lets the browser use large
    // buffers, so its real-time audio thread wakes far less often: in an 8-person room on two
    // cores that is what leaves the main thread time to set up the newcomer's links.
    if (this.context === null) this.context = new AudioContext({ latencyHint: 'playback' });
    if (this.context.state === 'suspended') this.context.resume().catch(() => {});
    const source = this.context.createMediaStreamSource(stream);
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    this.meters.set(key, { source, analyser, samples: new Float32Array(analyser.fftSize) });
  }

  /** @param {string} key */
  detach(key) {
    const meter = this.meters.get(key);
    if (meter === undefined) return;
    meter.source.disconnect();
    this.meters.delete(key);
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
