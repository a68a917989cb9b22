// This browser's pseudonymous identity (docs/protocol.md, "Identity"): an ECDSA P-256 key pair
// made once with WebCrypto, its private key non-extractable, kept in IndexedDB. Script on the
// page can use the key to sign but can never read it out, so copying the public key (or a
// signature from another connection) cannot take this browser's identity.

import { IDENTIFY_CONTEXT, identify } from './protocol.js';

const DB_NAME = 'xes';
const STORE = 'identity';
const KEY_ID = 'ecdsa-p256';
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' };

function base64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function openStore() {
  const open = indexedDB.open(DB_NAME, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  return request(open);
}

let keyPair = null;

/** The key pair, made and stored on first use; concurrent callers share one. */
export function identityKeys() {
  if (keyPair === null) {
    keyPair = (async () => {
      const db = await openStore();
      try {
        const stored = await request(db.transaction(STORE).objectStore(STORE).get(KEY_ID));
        if (stored) return stored;
        const made = await crypto.subtle.generateKey(ALGORITHM, false, ['sign', 'verify']);
        const pair = {
          privateKey: made.privateKey,
          publicKey: base64url(await crypto.subtle.exportKey('raw', made.publicKey)),
        };
        await request(db.transaction(STORE, 'readwrite').objectStore(STORE).put(pair, KEY_ID));
        return pair;
      } finally {
        db.close();
      }
    })();
    keyPair.catch(() => { keyPair = null; }); // try again on the next connection
  }
  return keyPair;
}

/**
 * The `identify` message for one connection's `hello.challenge`.
 * @param {string} challenge
 */
export async function identifyMessage(challenge) {
  const { privateKey, publicKey } = await identityKeys();
  const data = new TextEncoder().encode(IDENTIFY_CONTEXT + challenge);
  const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, privateKey, data);
  return identify(publicKey, base64url(signature));
}
