// After a call with a stranger: "Good call", "Bad call", "Block", "Report" (docs/moderation.md).
// DOM-free: what the page may offer about the last stranger, and the sentences it shows; main.js
// renders it.

import { describeDuration, REPORT_REASONS } from './protocol.js';

export { REPORT_REASONS };

/**
 * The feedback a person may still give about one stranger (their current or last match).
 * @param {{id: string, name: string}} stranger
 */
export function newFeedback(stranger) {
  return { stranger, rated: false, reported: false, blocked: false, reporting: false, said: '' };
}

/**
 * The feedback after the server's `noted` (what was recorded), with the sentence to show.
 * @param {object} feedback @param {string} ref `rate`, `report` or `block`
 */
export function noted(feedback, ref) {
  const said = {
    rate: 'Thanks: your rating was recorded.',
    report: 'Thanks: the moderators will look at your report, usually within a day.',
    block: `You will never be paired with ${feedback.stranger.name} again.`,
  }[ref];
  return said === undefined ? feedback : { ...feedback, said };
}

/**
 * What the page says on `identified`: a moderator's warning, a ban, a cooldown's time left.
 * @param {{warning?: string|null, banned?: boolean, cooldown_until?: number|null}} message
 * @param {number} nowSeconds the wall clock (unix seconds)
 * @returns {string[]}
 */
export function identifiedSentences(message, nowSeconds) {
  const sentences = [];
  if (message.warning) sentences.push(`A moderator warned you: ${message.warning}`);
  if (message.banned) sentences.push('A moderator has banned you from talking to strangers.');
  if (Number.isFinite(message.cooldown_until) && message.cooldown_until > nowSeconds) {
    sentences.push('You cannot talk to strangers for a while after bad ratings. ' +
      `Time left: ${describeDuration(message.cooldown_until - nowSeconds)}.`);
  }
  return sentences;
}
