#!/usr/bin/env node
'use strict';
/*
 * grpc-js peer for the one-port test (tests/sockets.rs): N unary Echo calls, each
 * on a client of its own with a local subchannel pool (so a connection of its own),
 * C at a time, against a grpcore server that serves other protocols on the same port.
 *
 * Usage: one_port_client.js HOST:PORT N [C]
 * Output: `grpc-js OK/N`, then up to 20 `FAIL <i>: <reason>` lines. Exit 0 when all passed.
 */
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO = path.resolve(__dirname, '..', '..', 'proto', 'echo.proto');
const [target, nArg, cArg] = process.argv.slice(2);
const total = Number(nArg);
const concurrency = Number(cArg || 50);
if (!target || !(total >= 0)) {
  console.error('usage: one_port_client.js HOST:PORT N [C]');
  process.exit(2);
}
const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
const Echo = grpc.loadPackageDefinition(def).grpcore.test.Echo;

function call(i) {
  return new Promise((resolve, reject) => {
    const client = new Echo(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const deadline = new Date(Date.now() + 30000);
    client.Unary({ message: `js-${i}`, seq: i }, { deadline }, (err, reply) => {
      client.close();
      if (err) return reject(err);
      if (reply.message !== `js-${i}` || Number(reply.seq) !== i) return reject(new Error(`wrong echo ${reply.message} ${reply.seq}`));
      resolve();
    });
  });
}

async function main() {
  let next = 0;
  let ok = 0;
  const failures = [];
  async function worker() {
    while (next < total) {
      const i = next++;
      try {
        await call(i);
        ok++;
      } catch (e) {
        failures.push(`FAIL ${i}: ${e.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  console.log(`grpc-js ${ok}/${total}`);
  failures.slice(0, 20).forEach((f) => console.log(f));
  process.exit(failures.length ? 1 : 0);
}
main();
