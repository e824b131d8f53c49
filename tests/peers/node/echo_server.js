#!/usr/bin/env node
'use strict';
/*
 * grpc-js peer: a server for grpcore.test.Echo (tests/proto/echo.proto).
 *
 * The Node twin of ../python/echo_server.py, with the same command line,
 * protocol and semantics (that file's docstring is the reference); it lets
 * grpcore's client be checked against a second implementation we did not
 * write, @grpc/grpc-js (pure JavaScript).  Run `npm ci` here first
 * (scripts/setup.sh does).
 *
 * Usage:
 *   echo_server.js [--max-receive-message-length N] [--proto PATH]
 *                  [--compression none|gzip|deflate]
 *                  [--tls-cert PEM --tls-key PEM [--tls-ca PEM]
 *                   [--require-client-cert]]
 *
 * --tls-cert/--tls-key make the port TLS (ServerCredentials.createSsl) with
 * that certificate chain and key; --tls-ca names the CA certificates client
 * certificates are checked against; --require-client-cert makes a client
 * certificate mandatory (mutual TLS; needs --tls-ca).  Without --tls-cert the
 * port is insecure, as before.
 *
 * Protocol with the parent process:
 *   - stdout carries exactly one line, `PORT <n>`, as soon as the server
 *     listens on 127.0.0.1:<n> (insecure, or TLS with --tls-cert).  Diagnostics go to stderr.
 *   - The server runs until its stdin reaches EOF (when stdin is a pipe, a
 *     socket or a terminal; /dev/null or a closed stdin is not watched),
 *     SIGTERM or SIGINT, or its parent process goes away; then it exits 0.
 *     Usage errors exit 2.
 *
 * Semantics (see the field comments in echo.proto):
 *   - `x-echo-*` request metadata comes back in the initial metadata under the
 *     same key and in the trailers as `x-trailer-*` (-bin values stay bytes).
 *   - sleep_ms: sleep in small steps first, stopping early once the call is
 *     cancelled or past its deadline.
 *   - fail_code != 0: end the call with that code and fail_message, and
 *     fail_details (if any) as trailer `grpc-status-details-bin`.
 *   - Response payload: 'x' * response_size if > 0, else the request's payload.
 *   - Unary: one echo.  ClientStream: message = request messages joined with
 *     ",", seq = number of requests, payload = 'x' * the last response_size
 *     set, else the payloads concatenated; a fail_code request aborts.
 *     ServerStream: seq responses numbered 0..seq-1 (sleep_ms before each),
 *     then fail_code if set.  Bidi: each request answered as it arrives
 *     (sleep_ms, then fail_code ends the stream, else an echo).
 *
 * --compression: grpc-js 1.14 servers never compress responses (its
 * server-interceptors.js: "response compression is currently not supported")
 * and ignore grpc.default_compression_algorithm.  So that this peer can
 * still send compressed responses like the grpcio one, --compression
 * gzip|deflate wraps two methods of grpc-js's per-call object: message
 * framing compresses the serialized message with Node's zlib and sets the
 * compressed flag, and the response headers say `grpc-encoding: <alg>`.  This
 * applies to calls whose request listed <alg> in grpc-accept-encoding (as
 * the C core does); other calls are answered uncompressed.  Requests in any
 * algorithm are decompressed by grpc-js itself.  The wrapped internals are
 * checked at start-up, so a grpc-js upgrade that changes them fails loudly.
 */

// Taken first thing, so that a parent dying during start-up is still noticed.
const PARENT_PID = process.ppid;

const fs = require('fs');
const path = require('path');
const tty = require('tty');
const zlib = require('zlib');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEFAULT_PROTO = path.resolve(__dirname, '..', '..', 'proto', 'echo.proto');
const ECHO_PREFIX = 'x-echo-';
const TRAILER_PREFIX = 'x-trailer-';
const DETAILS_KEY = 'grpc-status-details-bin';
const SLEEP_STEP_MS = 10;
const COMPRESSION = ['none', 'gzip', 'deflate'];

const USAGE = `usage: echo_server.js [-h] [--max-receive-message-length N] [--proto PATH]
                      [--compression {${COMPRESSION.join(',')}}]
                      [--tls-cert PEM --tls-key PEM [--tls-ca PEM] [--require-client-cert]]`;

function log(msg) {
  process.stderr.write(`echo_server: ${msg}\n`);
}

function usageError(msg) {
  process.stderr.write(`${USAGE}\necho_server.js: error: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = {
    maxReceive: null, proto: DEFAULT_PROTO, compression: 'none',
    tlsCert: null, tlsKey: null, tlsCa: null, requireClientCert: false,
  };
  const takeValue = (i, name, inline) => {
    if (inline !== undefined) return [inline, i];
    if (i + 1 >= argv.length) usageError(`argument ${name}: expected one argument`);
    return [argv[i + 1], i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const eq = argv[i].indexOf('=');
    const name = argv[i].startsWith('--') && eq > 0 ? argv[i].slice(0, eq) : argv[i];
    const inline = argv[i].startsWith('--') && eq > 0 ? argv[i].slice(eq + 1) : undefined;
    let value;
    switch (name) {
      case '-h':
      case '--help':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      case '--max-receive-message-length':
        [value, i] = takeValue(i, name, inline);
        if (!/^-?\d+$/.test(value)) usageError(`argument ${name}: invalid int value: '${value}'`);
        args.maxReceive = Number(value);
        break;
      case '--proto':
        [value, i] = takeValue(i, name, inline);
        args.proto = value;
        break;
      case '--compression':
        [value, i] = takeValue(i, name, inline);
        if (!COMPRESSION.includes(value)) {
          usageError(`argument ${name}: invalid choice: '${value}' (choose from ${COMPRESSION.join(', ')})`);
        }
        args.compression = value;
        break;
      case '--tls-cert':
        [args.tlsCert, i] = takeValue(i, name, inline);
        break;
      case '--tls-key':
        [args.tlsKey, i] = takeValue(i, name, inline);
        break;
      case '--tls-ca':
        [args.tlsCa, i] = takeValue(i, name, inline);
        break;
      case '--require-client-cert':
        args.requireClientCert = true;
        break;
      default:
        usageError(`unrecognized arguments: ${argv.slice(i).join(' ')}`);
    }
  }
  if (Boolean(args.tlsCert) !== Boolean(args.tlsKey)) usageError('--tls-cert and --tls-key go together');
  if ((args.tlsCa || args.requireClientCert) && !args.tlsCert) {
    usageError('--tls-ca and --require-client-cert need --tls-cert');
  }
  if (args.requireClientCert && !args.tlsCa) usageError('--require-client-cert needs --tls-ca');
  return args;
}

function loadService(protoPath) {
  const definition = protoLoader.loadSync(protoPath, {
    keepCase: true,
    longs: String, // int64 seq as a decimal string: exact over the whole range
    bytes: Buffer,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).grpcore.test.Echo.service;
}

/* ---- response compression (see the header comment) ---------------------- */

function enableResponseCompression(algorithm) {
  const internals = require('@grpc/grpc-js/build/src/server-interceptors');
  const Base = internals.BaseServerInterceptingCall;
  if (typeof internals.getServerInterceptingCall !== 'function' ||
      typeof Base !== 'function' ||
      typeof Base.prototype.serializeMessage !== 'function' ||
      typeof Base.prototype.sendMetadata !== 'function') {
    throw new Error('grpc-js internals changed: cannot add response compression');
  }
  const compress = algorithm === 'gzip' ? zlib.gzipSync : zlib.deflateSync;
  // http2 stream -> the encodings its request accepted (grpc-accept-encoding).
  const accepted = new WeakMap();

  const getCall = internals.getServerInterceptingCall;
  internals.getServerInterceptingCall = function (interceptors, stream, headers, ...rest) {
    const header = headers['grpc-accept-encoding'];
    const list = Array.isArray(header) ? header.join(',') : header || '';
    accepted.set(stream, new Set(list.split(',').map((s) => s.trim())));
    return getCall.call(this, interceptors, stream, headers, ...rest);
  };
  const compresses = (call) => {
    const set = accepted.get(call.stream);
    return set !== undefined && set.has(algorithm);
  };

  const sendMetadata = Base.prototype.sendMetadata;
  Base.prototype.sendMetadata = function (metadata) {
    if (!this.metadataSent && compresses(this)) {
      metadata = metadata ? metadata.clone() : new grpc.Metadata();
      metadata.set('grpc-encoding', algorithm); // overrides grpc-js's "identity"
    }
    return sendMetadata.call(this, metadata);
  };

  const serializeMessage = Base.prototype.serializeMessage;
  Base.prototype.serializeMessage = function (value) {
    const framed = serializeMessage.call(this, value); // flag 0, length, message
    if (!compresses(this)) return framed;
    const packed = compress(framed.subarray(5));
    const out = Buffer.allocUnsafe(packed.length + 5);
    out.writeUInt8(1, 0); // compressed with the call's grpc-encoding
    out.writeUInt32BE(packed.length, 1);
    packed.copy(out, 5);
    return out;
  };
}

/* ---- the service --------------------------------------------------------- */

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** (initial, trailing) metadata derived from the request's x-echo-* keys. */
function echoMetadata(call) {
  const initial = new grpc.Metadata();
  const trailing = new grpc.Metadata();
  const map = call.metadata.toJSON();
  for (const key of Object.keys(map)) {
    if (!key.startsWith(ECHO_PREFIX)) continue;
    for (const value of map[key]) {
      initial.add(key, value);
      trailing.add(TRAILER_PREFIX + key.slice(ECHO_PREFIX.length), value);
    }
  }
  return { initial, trailing };
}

/** Echo metadata: initial now; returns the trailers for the end of the call. */
function startCall(call) {
  const { initial, trailing } = echoMetadata(call);
  if (Object.keys(initial.toJSON()).length > 0) call.sendMetadata(initial);
  return trailing;
}

/** Sleeps ms in small steps; false if the call stopped meanwhile. */
async function sleepWhileActive(call, ms) {
  const end = Date.now() + Math.max(ms, 0);
  for (;;) {
    if (call.cancelled) return false;
    const left = end - Date.now();
    if (left <= 0) return true;
    await sleep(Math.min(SLEEP_STEP_MS, left));
  }
}

/** The status a request with fail_code asks for, trailers included. */
function failure(trailing, req) {
  let code = req.fail_code;
  let details = req.fail_message;
  if (!Number.isInteger(code) || code <= 0 || code > 16) {
    details = `unknown fail_code ${req.fail_code}: ${details}`;
    code = grpc.status.UNKNOWN;
  }
  const metadata = trailing.clone();
  if (req.fail_details.length > 0) metadata.set(DETAILS_KEY, Buffer.from(req.fail_details));
  return { code, details, metadata };
}

function responsePayload(req) {
  return req.response_size > 0 ? Buffer.alloc(req.response_size, 'x') : req.payload;
}

/** Reads a request stream one message at a time: `await next()` gives null at the end. */
function reader(call) {
  const queue = [];
  let ended = false;
  let error = null;
  let wake = null;
  const notify = () => {
    if (wake) {
      const w = wake;
      wake = null;
      w();
    }
  };
  call.on('data', (m) => { queue.push(m); notify(); });
  call.on('end', () => { ended = true; notify(); });
  call.on('error', (e) => { error = e; notify(); });
  call.on('cancelled', () => { ended = true; notify(); });
  return async function next() {
    while (queue.length === 0 && !ended && !error) {
      await new Promise((resolve) => { wake = resolve; });
    }
    if (queue.length > 0) return queue.shift();
    if (error) throw error;
    return null;
  };
}

/** Writes one message, waiting for the stream to drain when its buffer is full. */
async function write(call, message) {
  if (!call.write(message)) {
    await new Promise((resolve) => {
      const done = () => {
        call.off('drain', done);
        call.off('cancelled', done);
        resolve();
      };
      call.on('drain', done);
      call.on('cancelled', done);
    });
  }
}

function report(call, err) {
  log(`handler failed: ${err && err.stack ? err.stack : err}`);
  if (call.cancelled) return;
  const status = { code: grpc.status.INTERNAL, details: `handler failed: ${err}` };
  if (typeof call.emit === 'function') call.emit('error', status);
}

const handlers = {
  Unary(call, callback) {
    (async () => {
      const req = call.request;
      const trailing = startCall(call);
      if (!(await sleepWhileActive(call, req.sleep_ms))) return callback(null, {});
      if (req.fail_code) return callback(failure(trailing, req));
      callback(null, { message: req.message, seq: req.seq, payload: responsePayload(req) },
        trailing);
    })().catch((err) => callback({ code: grpc.status.INTERNAL, details: `handler failed: ${err}` }));
  },

  ClientStream(call, callback) {
    (async () => {
      const trailing = startCall(call);
      const next = reader(call);
      const messages = [];
      const payloads = [];
      let sized = null;
      for (let req = await next(); req !== null; req = await next()) {
        if (!(await sleepWhileActive(call, req.sleep_ms))) return callback(null, {});
        if (req.fail_code) return callback(failure(trailing, req));
        messages.push(req.message);
        payloads.push(req.payload);
        if (req.response_size > 0) sized = req.response_size;
      }
      if (call.cancelled) return callback(null, {});
      const payload = sized !== null ? Buffer.alloc(sized, 'x') : Buffer.concat(payloads);
      callback(null, { message: messages.join(','), seq: String(messages.length), payload },
        trailing);
    })().catch((err) => callback({ code: grpc.status.INTERNAL, details: `handler failed: ${err}` }));
  },

  ServerStream(call) {
    (async () => {
      const req = call.request;
      const trailing = startCall(call);
      const payload = responsePayload(req);
      const count = BigInt(req.seq) > 0n ? Number(req.seq) : 0;
      for (let i = 0; i < count; i++) {
        if (!(await sleepWhileActive(call, req.sleep_ms))) return;
        await write(call, { message: req.message, seq: String(i), payload });
      }
      if (call.cancelled) return;
      if (req.fail_code) return call.emit('error', failure(trailing, req));
      call.end(trailing);
    })().catch((err) => report(call, err));
  },

  Bidi(call) {
    (async () => {
      const trailing = startCall(call);
      const next = reader(call);
      for (let req = await next(); req !== null; req = await next()) {
        if (!(await sleepWhileActive(call, req.sleep_ms))) return;
        if (req.fail_code) return call.emit('error', failure(trailing, req));
        await write(call, { message: req.message, seq: req.seq, payload: responsePayload(req) });
      }
      if (call.cancelled) return;
      call.end(trailing);
    })().catch((err) => report(call, err));
  },
};

/* ---- lifetime ------------------------------------------------------------ */

/** Calls stop() when stdin reaches EOF, if stdin is something that can close. */
function watchStdin(stop) {
  let st;
  try {
    st = fs.fstatSync(0);
  } catch (_) {
    return; // no stdin at all
  }
  if (!(st.isFIFO() || st.isSocket() || tty.isatty(0))) return; // e.g. /dev/null
  process.stdin.on('data', () => {});
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

/** Calls stop() when the parent process dies (we get re-parented). */
function watchParent(stop) {
  const timer = setInterval(() => {
    if (process.ppid !== PARENT_PID) stop();
  }, 500);
  timer.unref();
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  let service;
  try {
    service = loadService(args.proto);
  } catch (err) {
    log(`cannot load ${args.proto}: ${err.message}`);
    process.exit(1);
  }
  if (args.compression !== 'none') enableResponseCompression(args.compression);

  const options = {};
  if (args.maxReceive !== null) options['grpc.max_receive_message_length'] = args.maxReceive;
  const server = new grpc.Server(options);
  server.addService(service, handlers);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => server.forceShutdown(), 500);
    server.tryShutdown(() => {
      clearTimeout(force);
      process.exit(0);
    });
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  const credentials = args.tlsCert
    ? grpc.ServerCredentials.createSsl(
      args.tlsCa ? fs.readFileSync(args.tlsCa) : null,
      [{ private_key: fs.readFileSync(args.tlsKey), cert_chain: fs.readFileSync(args.tlsCert) }],
      args.requireClientCert)
    : grpc.ServerCredentials.createInsecure();
  server.bindAsync('127.0.0.1:0', credentials, (err, port) => {
    if (err) {
      log(`could not bind 127.0.0.1:0: ${err.message}`);
      process.exit(1);
    }
    process.stdout.write(`PORT ${port}\n`);
    watchStdin(stop);
    watchParent(stop);
  });
}

main();
