#!/usr/bin/env node
// One call of any kind with raw bytes, through @grpc/grpc-js; prints how it ended.
//
// Usage: raw_call.js TARGET KIND PATH [KEY=VALUE ...]
//
// KIND is unary, client_stream, server_stream or bidi. One empty message is sent (the
// streaming kinds then half-close); the request metadata is the KEY=VALUE pairs. Prints one
// line, `CODE <number> <details>` (0 and `OK` on success), and exits 0 whatever the status:
// the caller judges it.
'use strict';
const grpc = require('@grpc/grpc-js');

const [target, kind, path, ...pairs] = process.argv.slice(2);
const client = new grpc.Client(target, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
for (const pair of pairs) {
  const i = pair.indexOf('=');
  metadata.add(pair.slice(0, i), pair.slice(i + 1));
}
const id = (x) => x;
const options = { deadline: Date.now() + 10000 };
let reported = false;
function report(code, details) {
  if (reported) return;
  reported = true;
  console.log('CODE', code, details);
  client.close();
}
const onEnd = (err) => (err ? report(err.code, err.details) : report(0, 'OK'));
const onStatus = (s) => (s.code ? report(s.code, s.details) : report(0, 'OK'));
const empty = Buffer.alloc(0);
if (kind === 'unary') {
  client.makeUnaryRequest(path, id, id, empty, metadata, options, onEnd);
} else if (kind === 'client_stream') {
  const call = client.makeClientStreamRequest(path, id, id, metadata, options, onEnd);
  call.write(empty);
  call.end();
} else if (kind === 'server_stream' || kind === 'bidi') {
  const call = kind === 'bidi'
    ? client.makeBidiStreamRequest(path, id, id, metadata, options)
    : client.makeServerStreamRequest(path, id, id, empty, metadata, options);
  call.on('data', () => {});
  call.on('error', () => {});
  call.on('status', onStatus);
  if (kind === 'bidi') {
    call.write(empty);
    call.end();
  }
} else {
  console.error(`unknown kind ${kind}`);
  process.exit(2);
}
