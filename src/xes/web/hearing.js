// Telling the server that we still hear a member whose signalling socket was lost.
//
// The server keeps an away member's seat for a grace period; room-mates that still receive its
// audio say so with `hearing`, which extends the grace (docs/protocol.md, "Sessions"). Only this
// browser can know: the audio never passes through the server. "Still hearing" is read from
// getStats(): the inbound audio RTP packet count of that member's link went up since last time.

/**
 * Packets received so far on a connection's inbound audio streams.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<number>}
 */
export async function audioPacketsReceived(pc) {
  const stats = await pc.getStats();
  let packets = 0;
  stats.forEach((report) => {
    if (report.type === 'inbound-rtp' && report.kind === 'audio') packets += report.packetsReceived ?? 0;
  });
  return packets;
}

/**
 * Watches away members and calls `report(peerId)` every `intervalMs` while their audio arrives.
 * Start watching with {@link HearingReporter#away}, stop with {@link HearingReporter#back}.
 */
export class HearingReporter {
  /**
   * @param {object} options
   * @param {() => Map<string, RTCPeerConnection>} options.peerConnections read on every check
   * @param {(peerId: string) => void} options.report sends `hearing`
   * @param {number} [options.intervalMs] how often to check (the server asks for a quarter of
   *   its grace)
   */
  constructor({ peerConnections, report, intervalMs = 5000 }) {
    this.peerConnections = peerConnections;
    this.report = report;
    this.intervalMs = intervalMs;
    /** @type {Map<string, number>} away peer id -> packets counted at the last check */
    this.watched = new Map();
    this.timer = null;
  }

  /** @param {number} intervalMs */
  setInterval(intervalMs) {
    this.intervalMs = intervalMs;
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = setInterval(() => this.check(), this.intervalMs);
    }
  }

  /**
   * `peer-away`: from now on, report while its audio keeps arriving.
   * @param {string} peerId
   */
  away(peerId) {
    if (this.watched.has(peerId)) return;
    this.watched.set(peerId, -1);
    this.count(peerId).then((packets) => {
      if (this.watched.get(peerId) === -1) this.watched.set(peerId, packets);
    });
    if (this.timer === null) this.timer = setInterval(() => this.check(), this.intervalMs);
  }

  /**
   * `peer-back` or `peer-left`: nothing more to report about it.
   * @param {string} peerId
   */
  back(peerId) {
    this.watched.delete(peerId);
    if (this.watched.size === 0) this.stop();
  }

  /** Forget every away member (we left the room). */
  stop() {
    this.watched.clear();
    clearInterval(this.timer);
    this.timer = null;
  }

  /** @returns {string[]} the members being watched */
  awayPeers() {
    return [...this.watched.keys()];
  }

  async check() {
    for (const [peerId, before] of [...this.watched]) {
      const packets = await this.count(peerId);
      if (!this.watched.has(peerId)) continue; // came back meanwhile
      this.watched.set(peerId, packets);
      if (before >= 0 && packets > before) this.report(peerId);
    }
  }

  /**
   * @param {string} peerId
   * @returns {Promise<number>} -1 when there is no link to it (nothing to hear)
   */
  async count(peerId) {
    const pc = this.peerConnections().get(peerId);
    if (!pc) return -1;
    try {
      return await audioPacketsReceived(pc);
    } catch {
      return -1; // closed meanwhile
    }
  }
}
