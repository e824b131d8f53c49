#!/usr/bin/env node
'use strict';
/*
 * @grpc/grpc-js-xds as an xDS client: the Node twin of ../python/xds_client.py.
 *
 * Usage:
 *   xds_client.js [--expect-failures] [--concurrency K] TARGET N
 *
 * The bootstrap comes from the environment (GRPC_XDS_BOOTSTRAP or
 * GRPC_XDS_BOOTSTRAP_CONFIG), as grpc-js-xds reads it.  Makes N unary calls
 * to /grpcore.test.Echo/Unary with an empty request, one after another (or K
 * at a time), each with a 5 s deadline and waitForReady, after one call that
 * waits for the xDS configuration and is not counted; the response's field 1
 * (EchoResponse.message) names the backend.  Prints one JSON line on stdout:
 *   {"counts": {"<message>": n, ...}, "codes": {"<grpc code>": n, ...},
 *    "delayed": n, "failures": n, "first_error": "..."}
 * where "codes" counts every call's status (0 for OK) and "delayed" the calls
 * that took 200 ms or more.  With --expect-failures, failed calls are part of
 * the measurement (fault injection): the exit status is 0 whatever they were.
 * Otherwise it exits 0 only when every call succeeded.
 */

const grpc = require('@grpc/grpc-js');
const grpcXds = require('@grpc/grpc-js-xds');

grpcXds.register();

/** EchoResponse.message (field 1, a string) from the serialized response. */
function messageOf(buf) {
  if (buf.length === 0 || buf[0] !== 0x0a) return '';
  let i = 1;
  let n = 0;
  let shift = 0;
  for (;;) {
    const b = buf[i++];
    n += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) break;
  }
  return buf.subarray(i, i + n).toString('utf8');
}

function call(client) {
  const id = (x) => x;
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    client.makeUnaryRequest('/grpcore.test.Echo/Unary', id, id, Buffer.alloc(0), new grpc.Metadata(),
      { deadline: Date.now() + 5000, waitForReady: true }, (err, response) => {
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        resolve(err ? { code: err.code, details: err.details, ms } : { code: 0, who: messageOf(response), ms });
      });
  });
}

async function main() {
  const args = process.argv.slice(2);
  let expectFailures = false;
  let concurrency = 1;
  while (args.length > 0 && args[0].startsWith('--')) {
    const flag = args.shift();
    if (flag === '--expect-failures') {
      expectFailures = true;
    } else if (flag === '--concurrency') {
      concurrency = Number(args.shift());
    } else {
      args.unshift('?');
      break;
    }
  }
  if (args.length !== 2 || !(Number(args[1]) > 0) || !(concurrency >= 1)) {
    console.error('usage: xds_client.js [--expect-failures] [--concurrency K] TARGET N');
    process.exit(2);
  }
  const [target, n] = [args[0], Number(args[1])];
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  const counts = {};
  const codes = {};
  let failures = 0;
  let delayed = 0;
  let firstError = null;
  const record = (r) => {
    codes[r.code] = (codes[r.code] || 0) + 1;
    if (r.ms >= 200) delayed++;
    if (r.code === 0) {
      counts[r.who] = (counts[r.who] || 0) + 1;
    } else {
      failures++;
      if (firstError === null) firstError = `${r.code}: ${r.details}`;
    }
  };
  // The configuration arrives during this call: not counted (it may take long, or be
  // aborted by fault injection).
  await call(client);
  let started = 0;
  const worker = async () => {
    while (started < n) {
      started++;
      record(await call(client));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  client.close();
  console.log(JSON.stringify({ counts, codes, delayed, failures, first_error: firstError }));
  // grpc-js-xds keeps its ADS stream (and so the event loop) alive: exit explicitly.
  process.exit(failures === 0 || expectFailures ? 0 : 1);
}

main().catch((e) => {
  console.error('xds_client.js:', e);
  process.exit(3);
});
