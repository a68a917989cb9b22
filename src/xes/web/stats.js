// What kind of path each link took, read from getStats(): the selected ICE candidate pair.

/** Shown when audio goes straight between the two browsers. */
export const DIRECT = 'Direct';
/** Shown when audio goes through the TURN relay (which only sees encrypted SRTP). */
export const RELAYED = 'Relayed (encrypted)';

/**
 * The selected candidate pair of a connection.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<{localType: string, remoteType: string} | null>} null while none is selected
 */
export async function selectedPair(pc) {
  return pairOf(await pc.getStats());
}

/**
 * The selected candidate pair in one getStats() result.
 * @param {RTCStatsReport|Map<string, object>} stats
 * @returns {{localType: string, remoteType: string} | null}
 */
export function pairOf(stats) {
  let pair = null;
  stats.forEach((report) => {
    if (report.type === 'transport' && report.selectedCandidatePairId) {
      pair = stats.get(report.selectedCandidatePairId) ?? null;
    }
  });
  if (pair === null) {
    // Some implementations omit the transport report; fall back to the nominated pair.
    stats.forEach((report) => {
      if (pair === null && report.type === 'candidate-pair' && report.nominated && report.state === 'succeeded') {
        pair = report;
      }
    });
  }
  if (pair === null) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  if (!local || !remote) return null;
  return { localType: local.candidateType, remoteType: remote.candidateType };
}

/**
 * "Direct" or "Relayed (encrypted)" for a selected pair: relayed when either end is a relay
 * candidate.
 * @param {{localType: string, remoteType: string} | null} pair
 * @returns {string|null}
 */
export function linkKind(pair) {
  if (pair === null) return null;
  return pair.localType === 'relay' || pair.remoteType === 'relay' ? RELAYED : DIRECT;
}

/** @param {RTCPeerConnection} pc @returns {boolean} whether the link is still being set up */
function isSettingUp(pc) {
  return pc.connectionState === 'new' || pc.connectionState === 'connecting';
}

/**
 * While another link is being set up, a link already read waits at most this long for its next
 * read: the quality warnings (quality.js) judge the last few seconds.
 */
export const SET_UP_POLL_GAP_MS = 5000;

/**
 * Polls every link about once a second, except links still being set up (they are left out of
 * the update), and, while one is, links read less than SET_UP_POLL_GAP_MS ago. Event `update` (CustomEvent) has detail
 * `Map<peerId, {link: string|null, localType?: string, remoteType?: string, connectionState: string,
 * report: RTCStatsReport|null, at: number}>`: `report` is the whole getStats() result (quality.js
 * reads it), `at` when it was taken (performance.now()).
 */
export class LinkStats extends EventTarget {
  /**
   * @param {() => Map<string, RTCPeerConnection>} peerConnections read on every poll
   * @param {number} [intervalMs]
   * @param {() => number} [now] the clock (performance.now)
   */
  constructor(peerConnections, intervalMs = 1000, now = () => performance.now()) {
    super();
    this.peerConnections = peerConnections;
    this.intervalMs = intervalMs;
    this.now = now;
    this.timer = null;
    this.polling = false;
    /** @type {WeakMap<RTCPeerConnection, number>} when each link was last read */
    this.readAt = new WeakMap();
  }

  /** Start polling (idempotent). The first poll waits one interval: links just created have no
   * path yet, and a getStats call at join only competes with their offers (`poll()` on
   * "connected" reads the path as soon as there is one). */
  start() {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.poll(), this.intervalMs);
  }

  /** Stop polling. */
  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async poll() {
    if (this.polling) return;
    this.polling = true;
    try {
      const result = new Map();
      const connections = this.peerConnections();
      const settingUp = [...connections.values()].some(isSettingUp);
      for (const [peerId, pc] of connections) {
        // A link still being set up has no path to report, and Chromium answers getStats on the
        // threads that run its handshake: with seven links per page on a busy machine, asking
        // slows the very handshakes it waits for. Its peer keeps what was known before.
        if (isSettingUp(pc)) continue;
        // Nor, while another link is being set up, are the others asked every second: the same
        // threads run every link of the page, and in a full room on a busy machine six reads a
        // second compete with the newcomer's set-up. A link that has just connected is still
        // read at once, for its path.
        const readAt = this.readAt.get(pc);
        if (settingUp && readAt !== undefined && this.now() - readAt < SET_UP_POLL_GAP_MS) continue;
        let report = null;
        if (pc.connectionState !== 'closed') {
          try {
            report = await pc.getStats();
          } catch {
            report = null;
          }
        }
        if (report !== null) this.readAt.set(pc, this.now());
        const pair = report === null ? null : pairOf(report);
        result.set(peerId, {
          link: linkKind(pair), ...(pair ?? {}), connectionState: pc.connectionState, report, at: performance.now(),
        });
      }
      this.dispatchEvent(new CustomEvent('update', { detail: result }));
    } finally {
      this.polling = false;
    }
  }
}
