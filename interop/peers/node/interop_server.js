#!/usr/bin/env node
'use strict';
/*
 * Interop server on @grpc/grpc-js: grpc.testing.TestService, written for grpcore from
 * the gRPC interop test descriptions with grpc-js's ordinary API (addService).
 *
 *   interop_server.js --port=PORT [--use_tls[=true|false]]
 *                     [--tls_cert_file=PEM --tls_key_file=PEM]
 *
 * Listens on [::]:PORT (0 picks a free port), prints `PORT <n>` on stdout once listening,
 * and serves until killed. TLS uses ../../certs/server1.pem and server1.key unless the
 * files are given.
 *
 * Server features: EmptyCall, UnaryCall, StreamingInputCall, StreamingOutputCall,
 * FullDuplexCall, Echo Status, Echo Metadata, ResponseParameters.interval_us. grpc-js
 * methods that are not implemented (UnimplementedCall) and unknown services answer
 * UNIMPLEMENTED.
 *
 * Not possible with grpc-js 1.14 (so the compression cases cannot run against this
 * server): CompressedResponse, as its server never compresses a message
 * (server-interceptors.js, serializeMessage: "response compression is currently not
 * supported, so this compressed bit is always 0"); CompressedRequest, as it decompresses
 * before the handler and removes grpc-encoding from the metadata the handler sees.
 * Requests that ask for either (response_compressed, ResponseParameters.compressed or
 * expect_compressed set to true) are answered UNIMPLEMENTED saying so, rather than with
 * a wrong answer.
 */

const common = require('./interop_common');
const { grpc } = common;

const testing = common.loadTesting();
const CANNOT_COMPRESS = 'grpc-js servers cannot compress responses (response_compressed / compressed true)';
const CANNOT_SEE_COMPRESSION = 'grpc-js servers cannot see whether a request arrived compressed (expect_compressed true)';

/** Initial and trailing metadata echoing the request's echo keys. */
function echoMetadata(call) {
  const initial = new grpc.Metadata();
  const trailing = new grpc.Metadata();
  for (const v of call.metadata.get(common.ECHO_INITIAL_KEY)) initial.add(common.ECHO_INITIAL_KEY, v);
  for (const v of call.metadata.get(common.ECHO_TRAILING_KEY)) trailing.add(common.ECHO_TRAILING_KEY, v);
  if (Object.keys(initial.getMap()).length > 0) call.sendMetadata(initial);
  return trailing;
}

/** The error a request asks for (Echo Status), the features this server lacks, or null. */
function requestedError(req, trailing) {
  if (req.expect_compressed && req.expect_compressed.value) {
    return { code: grpc.status.UNIMPLEMENTED, details: CANNOT_SEE_COMPRESSION, metadata: trailing };
  }
  const params = req.response_parameters || [];
  if ((req.response_compressed && req.response_compressed.value) || params.some((p) => p.compressed && p.compressed.value)) {
    return { code: grpc.status.UNIMPLEMENTED, details: CANNOT_COMPRESS, metadata: trailing };
  }
  if (req.response_type !== undefined && req.response_type !== 0) {
    return { code: grpc.status.INVALID_ARGUMENT, details: `unsupported response_type ${req.response_type}`, metadata: trailing };
  }
  return null;
}

function echoStatus(req, trailing) {
  const s = req.response_status;
  return s && s.code !== 0 ? { code: s.code, details: s.message, metadata: trailing } : null;
}

const sleep = (us) => new Promise((resolve) => setTimeout(resolve, us / 1000));

/*
 * The requests of a streaming call, as an async iterator fed by 'data' events. (A
 * `for await` straight over a grpc-js 1.14 server stream never sees the client's
 * half-close: the loop waits forever after the last message.)
 */
async function* requests(call) {
  const queue = [];
  let ended = false;
  let wake = null;
  const notify = () => {
    if (wake) wake();
    wake = null;
  };
  call.on('data', (req) => { queue.push(req); notify(); });
  call.on('end', () => { ended = true; notify(); });
  call.on('error', () => { ended = true; notify(); });
  call.on('cancelled', () => { ended = true; notify(); });
  for (;;) {
    if (queue.length > 0) yield queue.shift();
    else if (ended || call.cancelled) return;
    else await new Promise((resolve) => { wake = resolve; });
  }
}

/** Writes one response per parameter, after its interval. */
async function writeResponses(call, params) {
  for (const p of params) {
    if (p.interval_us > 0) await sleep(p.interval_us);
    if (call.cancelled) return;
    call.write({ payload: common.zeros(p.size) });
  }
}

const implementation = {
  EmptyCall(call, callback) {
    callback(null, {}, echoMetadata(call));
  },

  UnaryCall(call, callback) {
    const trailing = echoMetadata(call);
    const req = call.request;
    const err = requestedError(req, trailing) || echoStatus(req, trailing);
    if (err) return callback(err);
    callback(null, { payload: common.zeros(req.response_size) }, trailing);
  },

  StreamingInputCall(call, callback) {
    const trailing = echoMetadata(call);
    let total = 0;
    let failed = false;
    call.on('data', (req) => {
      const err = requestedError(req, trailing);
      if (err && !failed) {
        failed = true;
        callback(err);
      }
      total += req.payload ? req.payload.body.length : 0;
    });
    call.on('end', () => {
      if (!failed) callback(null, { aggregated_payload_size: total }, trailing);
    });
    call.on('error', () => {});
  },

  async StreamingOutputCall(call) {
    const trailing = echoMetadata(call);
    const req = call.request;
    const err = requestedError(req, trailing);
    if (err) return call.emit('error', err);
    await writeResponses(call, req.response_parameters);
    const status = echoStatus(req, trailing);
    if (status) return call.emit('error', status);
    call.end(trailing);
  },

  async FullDuplexCall(call) {
    const trailing = echoMetadata(call);
    for await (const req of requests(call)) {
      const err = requestedError(req, trailing) || echoStatus(req, trailing);
      if (err) return call.emit('error', err);
      await writeResponses(call, req.response_parameters);
    }
    if (!call.cancelled) call.end(trailing);
  },
};

function main(argv) {
  const flags = common.parseFlags(argv, ['port', 'tls_cert_file', 'tls_key_file'], ['use_tls']);
  if (flags.port === undefined) common.usage('--port is required');
  let creds;
  if (flags.use_tls) {
    const cert = common.read(flags.tls_cert_file || `${common.CERTS}/server1.pem`);
    const key = common.read(flags.tls_key_file || `${common.CERTS}/server1.key`);
    creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }]);
  } else {
    if (flags.tls_cert_file || flags.tls_key_file) common.usage('--tls_cert_file and --tls_key_file need --use_tls');
    creds = grpc.ServerCredentials.createInsecure();
  }
  const server = new grpc.Server();
  server.addService(testing.TestService.service, implementation);
  server.bindAsync(`[::]:${Number(flags.port)}`, creds, (err, port) => {
    if (err) {
      process.stderr.write(`interop_server.js: cannot listen: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`PORT ${port}\n`);
    const version = require('@grpc/grpc-js/package.json').version;
    process.stderr.write(`interop_server.js: grpc-js ${version} serving on port ${port} (${flags.use_tls ? 'TLS' : 'plaintext'})\n`);
  });
}

main(process.argv.slice(2));
