// How good each link is, from getStats(), and how much audio each link may send.
//
// Quality: round-trip time, packet loss and jitter per link, judged against thresholds that are
// documented in the README ("Call quality"), so "Poor connection" always means the same thing.
// Bitrate: a full mesh sends one copy of our voice per link, so the Opus bitrate per link shrinks
// as the room grows, keeping a full room of 8 within the uplink budget below.

/** Loss is judged over (at least) this window: one lost burst should not flag a link for long. */
export const LOSS_WINDOW_MS = 5000;

/**
 * A link is "poor" past any of these. The anchors warn at 30 % loss over 5 s and 1.5 s of RTT;
 * Opus with in-band FEC hides about 10 % loss, and past 20 % speech breaks up audibly, so we warn
 * earlier on loss. Jitter beyond 100 ms outgrows the jitter buffer's comfortable range.
 */
export const POOR = Object.freeze({ lossPercent: 20, rttMs: 1500, jitterMs: 100 });

/**
 * Upstream budget for a full room: our voice to 7 others in at most 250 kbit/s, counted as
 * getStats counts it (RTP payload and RTP headers, `bytesSent + headerBytesSent`).
 */
export const UPLINK_BUDGET_BPS = 250_000;
/** What RTP headers (12 bytes + header extensions, 50 packets/s) add to each link's payload. */
export const RTP_HEADER_BPS = 10_000;
/** Opus is clear speech from 16 kbit/s and full-band music-grade voice by 40 kbit/s. */
export const OPUS_MIN_BPS = 16_000;
export const OPUS_MAX_BPS = 40_000;

/**
 * The Opus bitrate for each link in a room of `people` (us included): the budget shared by the
 * links, less their headers, in 4 kbit/s steps, within [OPUS_MIN_BPS, OPUS_MAX_BPS].
 * 2–6 people: 40 kbit/s; 7: 28 kbit/s; 8: 24 kbit/s (7 × (24 + 10) = 238 kbit/s up).
 * @param {number} people
 * @returns {number} bits per second
 */
export function opusBitrate(people) {
  const links = Math.max(1, people - 1);
  const share = Math.floor((UPLINK_BUDGET_BPS / links - RTP_HEADER_BPS) / 4000) * 4000;
  return Math.min(OPUS_MAX_BPS, Math.max(OPUS_MIN_BPS, share));
}

/**
 * The cumulative counters of one poll of one link.
 * @param {Map<string, object>|RTCStatsReport} stats
 * @param {number} at when it was taken, in ms (any monotonic clock)
 * @returns {{at: number, received: number, lost: number, jitterMs: number|null, rttMs: number|null,
 *   energy: number, duration: number}} `energy` and `duration`: the audio played so far
 *   (`totalAudioEnergy`, `totalSamplesDuration`), which `playedLevel` turns into a loudness
 */
export function sample(stats, at) {
  let received = 0;
  let lost = 0;
  let energy = 0;
  let duration = 0;
  let jitterMs = null;
  let rttMs = null;
  let pairRttMs = null;
  stats.forEach((report) => {
    if (report.type === 'inbound-rtp' && report.kind === 'audio') {
      received += report.packetsReceived ?? 0;
      lost += Math.max(0, report.packetsLost ?? 0);
      if (typeof report.jitter === 'number') jitterMs = Math.max(jitterMs ?? 0, report.jitter * 1000);
      energy += report.totalAudioEnergy ?? 0;
      duration += report.totalSamplesDuration ?? 0;
    } else if (report.type === 'remote-inbound-rtp' && report.kind === 'audio' &&
      typeof report.roundTripTime === 'number') {
      rttMs = report.roundTripTime * 1000;
    } else if (report.type === 'candidate-pair' && report.nominated &&
      typeof report.currentRoundTripTime === 'number') {
      pairRttMs = report.currentRoundTripTime * 1000;
    }
  });
  return { at, received, lost, jitterMs, rttMs: rttMs ?? pairRttMs, energy, duration };
}

/**
 * How loud a link's voice played between its last two samples, in dB (0 is full scale;
 * -Infinity when nothing played): the mean square of the played audio is the energy added over
 * the seconds added (the stats' `totalAudioEnergy` sums each frame's level squared times its
 * length). Chromium measures it as the audio leaves for the speakers, so after the element's
 * volume; the caller divides that out.
 * @param {ReturnType<typeof sample>[]} samples
 * @returns {number}
 */
export function playedLevel(samples) {
  if (samples.length < 2) return -Infinity;
  const [before, last] = samples.slice(-2);
  const seconds = last.duration - before.duration;
  const energy = last.energy - before.energy;
  if (!(seconds > 0) || !(energy > 0)) return -Infinity;
  return 10 * Math.log10(energy / seconds);
}

/**
 * The quality of a link from its recent samples (oldest first, the newest last).
 * @param {ReturnType<typeof sample>[]} samples
 * @returns {{rttMs: number|null, lossPercent: number|null, jitterMs: number|null, poor: string|null}}
 *   `poor` is a plain-words reason when a threshold is passed, else null
 */
export function judge(samples) {
  const last = samples.at(-1);
  if (last === undefined) return { rttMs: null, lossPercent: null, jitterMs: null, poor: null };
  // The newest sample at least a window old (or the oldest there is): polls that come late on a
  // busy machine still give a loss figure, over a little more than the window.
  const older = samples.slice(0, -1);
  const first = older.findLast((s) => last.at - s.at >= LOSS_WINDOW_MS) ?? older[0] ?? last;
  const received = last.received - first.received;
  // packetsLost may go down (duplicates count against it, per the stats spec): never below 0.
  const lost = Math.max(0, last.lost - first.lost);
  const lossPercent = received + lost > 0 ? (100 * lost) / (received + lost) : null;
  const { rttMs, jitterMs } = last;
  let poor = null;
  if (lossPercent !== null && lossPercent > POOR.lossPercent) {
    poor = `${Math.round(lossPercent)}% of the audio is lost`;
  } else if (rttMs !== null && rttMs > POOR.rttMs) {
    poor = `sound takes ${(rttMs / 1000).toFixed(1)} s to go there and back`;
  } else if (jitterMs !== null && jitterMs > POOR.jitterMs) {
    poor = 'the audio arrives unevenly';
  }
  return { rttMs, lossPercent, jitterMs, poor };
}

/**
 * The numbers in words for the detail view: "Round trip 12 ms · Loss 0.0% · Jitter 3 ms".
 * @param {{rttMs: number|null, lossPercent: number|null, jitterMs: number|null}} quality
 * @returns {string}
 */
export function describeNumbers({ rttMs, lossPercent, jitterMs }) {
  const ms = (value) => (value === null ? 'unknown' : `${Math.round(value)} ms`);
  const loss = lossPercent === null ? 'unknown' : `${lossPercent.toFixed(1)}%`;
  return `Round trip ${ms(rttMs)} · Loss ${loss} · Jitter ${ms(jitterMs)}`;
}
