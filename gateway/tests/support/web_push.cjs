// The browser's side of Web Push, written apart from the gateway's code: decrypts each push body with the
// `http_ece` package (RFC 8188 aes128gcm, RFC 8291 keys) and verifies its VAPID JWT with node:crypto.
// stdin: {"uaPrivate", "auth", "vapidPublic", "pushes": [{"body", "authorization"}]}, base64url throughout.
// stdout: [{"plaintext", "header", "claims", "k", "verified"}], one per push, in order.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const ece = require('http_ece');

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const receiver = crypto.createECDH('prime256v1');
receiver.setPrivateKey(Buffer.from(input.uaPrivate, 'base64url'));
const point = Buffer.from(input.vapidPublic, 'base64url');
const vapid = crypto.createPublicKey({
  key: { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') },
  format: 'jwk',
});
const json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

const results = input.pushes.map(({ body, authorization }) => {
  const plaintext = ece.decrypt(Buffer.from(body, 'base64url'), {
    version: 'aes128gcm',
    privateKey: receiver,
    authSecret: input.auth,
  });
  const [, token, k] = /^vapid t=([^,\s]+), k=([A-Za-z0-9_-]+)$/.exec(authorization);
  const [header, claims, signature] = token.split('.');
  const verified = crypto.verify(
    'sha256',
    Buffer.from(`${header}.${claims}`),
    { key: vapid, dsaEncoding: 'ieee-p1363' },
    Buffer.from(signature, 'base64url'),
  );
  return { plaintext: plaintext.toString('utf8'), header: json(header), claims: json(claims), k, verified };
});
process.stdout.write(JSON.stringify(results));
