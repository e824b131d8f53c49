#!/usr/bin/env node
'use strict';
/*
 * Interop client on @grpc/grpc-js: the client cases of the gRPC interop test
 * descriptions, written for grpcore with grpc-js's ordinary API (clients made from the
 * loaded package definition).
 *
 *   interop_client.js --server_port=PORT [--server_host=HOST] [--server_host_override=NAME]
 *                     [--use_tls[=true|false]] [--use_test_ca[=true|false]] [--ca_file=PEM]
 *                     --test_case=NAME[,NAME...]|all
 *
 * Exits 0 when every case passed, 1 when one failed.
 *
 * Compression: grpc-js compresses per channel (grpc.default_compression_algorithm), so the
 * compressed calls go through a second client made with gzip; a message is sent
 * uncompressed on it with the NoCompress write flag. grpc-js does not show whether a
 * received message was compressed, so server_compressed_* check the responses' sizes and
 * contents only (the interop descriptions allow this: "some languages may not have access
 * to the message flags").
 */

const common = require('./interop_common');
const { grpc } = common;

const testing = common.loadTesting();
const NO_COMPRESS = 2; // grpc-js WriteFlags.NoCompress
const GZIP = 2; // grpc-js CompressionAlgorithms.gzip

const CASES = [
  'empty_unary', 'large_unary', 'client_compressed_unary', 'server_compressed_unary',
  'client_streaming', 'client_compressed_streaming', 'server_streaming',
  'server_compressed_streaming', 'ping_pong', 'empty_stream', 'custom_metadata',
  'status_code_and_message', 'special_status_message', 'unimplemented_method',
  'unimplemented_service', 'cancel_after_begin', 'cancel_after_first_response',
  'timeout_on_sleeping_server',
];

const SPECIAL_STATUS_MESSAGE = '\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \u{1f608}\t\n';
const ECHO_INITIAL_VALUE = 'test_initial_metadata_value';
const ECHO_TRAILING_VALUE = Buffer.from([0xab, 0xab, 0xab]);

class CaseFailed extends Error {}

function ensure(cond, msg) {
  if (!cond) throw new CaseFailed(msg);
}

function checkPayload(payload, size, what) {
  const body = payload ? payload.body : Buffer.alloc(0);
  ensure(body.length === size, `${what}: payload of ${body.length} bytes, expected ${size}`);
  ensure(body.every((b) => b === 0), `${what}: payload is not all zeros`);
}

/** A unary call as a promise of {response, initial, trailing} or a rejected status. */
function unary(client, method, req, metadata = new grpc.Metadata(), options = {}) {
  return new Promise((resolve, reject) => {
    let initial = new grpc.Metadata();
    let response;
    let error;
    const call = client[method](req, metadata, options, (err, res) => {
      error = err;
      response = res;
    });
    call.on('metadata', (md) => { initial = md; });
    call.on('status', (status) => {
      if (error) reject(error);
      else resolve({ response, initial, trailing: status.metadata });
    });
  });
}

/** Reads a response stream to its end: {responses, initial, trailing} or a rejected status. */
function collect(call) {
  return new Promise((resolve, reject) => {
    const responses = [];
    let initial = new grpc.Metadata();
    let error = null;
    call.on('metadata', (md) => { initial = md; });
    call.on('data', (r) => responses.push(r));
    call.on('error', (e) => { error = e; });
    call.on('status', (status) => {
      if (error) reject(error);
      else resolve({ responses, initial, trailing: status.metadata });
    });
  });
}

async function expectError(promise, code, message, what) {
  try {
    await promise;
  } catch (e) {
    ensure(e.code === code, `${what}: ended ${e.code} '${e.details}', expected ${code}`);
    if (message !== undefined) ensure(e.details === message, `${what}: message ${JSON.stringify(e.details)}, expected ${JSON.stringify(message)}`);
    return;
  }
  throw new CaseFailed(`${what}: succeeded, expected code ${code}`);
}

/** A client-streaming call: writes [message, flags] pairs, resolves with the response. */
function clientStream(client, writes) {
  return new Promise((resolve, reject) => {
    const call = client.StreamingInputCall((err, res) => (err ? reject(err) : resolve(res)));
    for (const [message, flags] of writes) call.write(message, flags);
    call.end();
  });
}

const largeRequest = (extra = {}) => ({ response_size: 314159, payload: common.zeros(271828), ...extra });
const duplexRequest = (size, payload) => ({ response_parameters: [{ size }], payload: common.zeros(payload) });
const input = (size, expect) => ({ payload: common.zeros(size), expect_compressed: expect === undefined ? null : { value: expect } });

/** Waits for the next 'data' of a stream (or its error). */
function nextMessage(call) {
  return new Promise((resolve, reject) => {
    const onData = (r) => { cleanup(); resolve(r); };
    const onError = (e) => { cleanup(); reject(e); };
    const onEnd = () => { cleanup(); resolve(null); };
    const cleanup = () => {
      call.removeListener('data', onData);
      call.removeListener('error', onError);
      call.removeListener('end', onEnd);
    };
    call.on('data', onData);
    call.on('error', onError);
    call.on('end', onEnd);
  });
}

const cases = {
  async empty_unary(c) {
    const { response } = await unary(c.test, 'EmptyCall', {});
    ensure(response && Object.keys(response).length === 0, 'EmptyCall answered a non-empty message');
  },

  async large_unary(c) {
    const { response } = await unary(c.test, 'UnaryCall', largeRequest());
    checkPayload(response.payload, 314159, 'UnaryCall');
  },

  async client_compressed_unary(c) {
    const probe = largeRequest({ expect_compressed: { value: true } });
    await expectError(unary(c.test, 'UnaryCall', probe), grpc.status.INVALID_ARGUMENT, undefined, 'uncompressed probe');
    let { response } = await unary(c.gzip(), 'UnaryCall', probe);
    checkPayload(response.payload, 314159, 'compressed UnaryCall');
    ({ response } = await unary(c.test, 'UnaryCall', largeRequest({ expect_compressed: { value: false } })));
    checkPayload(response.payload, 314159, 'uncompressed UnaryCall');
  },

  async server_compressed_unary(c) {
    for (const value of [true, false]) {
      const { response } = await unary(c.test, 'UnaryCall', largeRequest({ response_compressed: { value } }));
      checkPayload(response.payload, 314159, `response_compressed ${value}`);
    }
  },

  async client_streaming(c) {
    const res = await clientStream(c.test, [27182, 8, 1828, 45904].map((n) => [input(n)]));
    ensure(res.aggregated_payload_size === 74922, `aggregated_payload_size ${res.aggregated_payload_size}`);
  },

  async client_compressed_streaming(c) {
    await expectError(clientStream(c.test, [[input(27182, true)]]), grpc.status.INVALID_ARGUMENT, undefined, 'uncompressed probe');
    const res = await clientStream(c.gzip(), [[input(27182, true)], [input(45904, false), NO_COMPRESS]]);
    ensure(res.aggregated_payload_size === 73086, `aggregated_payload_size ${res.aggregated_payload_size}`);
  },

  async server_streaming(c) {
    const sizes = [31415, 9, 2653, 58979];
    const { responses } = await collect(c.test.StreamingOutputCall({ response_parameters: sizes.map((size) => ({ size })) }));
    responses.forEach((r, i) => checkPayload(r.payload, sizes[i], `response ${i}`));
    ensure(responses.length === 4, `${responses.length} responses, expected 4`);
  },

  async server_compressed_streaming(c) {
    const req = { response_parameters: [{ size: 31415, compressed: { value: true } }, { size: 92653, compressed: { value: false } }] };
    const { responses } = await collect(c.test.StreamingOutputCall(req));
    ensure(responses.length === 2, `${responses.length} responses, expected 2`);
    checkPayload(responses[0].payload, 31415, 'response 0');
    checkPayload(responses[1].payload, 92653, 'response 1');
  },

  async ping_pong(c) {
    const call = c.test.FullDuplexCall();
    const done = collect(call);
    for (const [size, payload] of [[31415, 27182], [9, 8], [2653, 1828], [58979, 45904]]) {
      const next = nextMessage(call);
      call.write(duplexRequest(size, payload));
      const r = await next;
      ensure(r !== null, `the stream ended before the response of ${size} bytes`);
      checkPayload(r.payload, size, 'a response');
    }
    call.end();
    const { responses } = await done;
    ensure(responses.length === 4, `${responses.length} responses, expected 4`);
  },

  async empty_stream(c) {
    const call = c.test.FullDuplexCall();
    call.end();
    const { responses } = await collect(call);
    ensure(responses.length === 0, 'a response arrived on an empty stream');
  },

  async custom_metadata(c) {
    const md = new grpc.Metadata();
    md.set(common.ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE);
    md.set(common.ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE);
    const check = (initial, trailing, what) => {
      const i = initial.get(common.ECHO_INITIAL_KEY);
      ensure(i.length === 1 && i[0] === ECHO_INITIAL_VALUE, `${what}: initial metadata ${JSON.stringify(i)}`);
      const t = trailing.get(common.ECHO_TRAILING_KEY);
      ensure(t.length === 1 && Buffer.isBuffer(t[0]) && t[0].equals(ECHO_TRAILING_VALUE), `${what}: trailing metadata ${JSON.stringify(t)}`);
    };
    const u = await unary(c.test, 'UnaryCall', largeRequest(), md);
    checkPayload(u.response.payload, 314159, 'UnaryCall');
    check(u.initial, u.trailing, 'UnaryCall');
    const call = c.test.FullDuplexCall(md);
    const done = collect(call);
    call.write(duplexRequest(314159, 271828));
    call.end();
    const d = await done;
    ensure(d.responses.length === 1, `FullDuplexCall: ${d.responses.length} responses`);
    checkPayload(d.responses[0].payload, 314159, 'FullDuplexCall');
    check(d.initial, d.trailing, 'FullDuplexCall');
  },

  async status_code_and_message(c) {
    await echoStatusCalls(c, 'test status message', true);
  },

  async special_status_message(c) {
    await echoStatusCalls(c, SPECIAL_STATUS_MESSAGE, false);
  },

  async unimplemented_method(c) {
    await expectError(unary(c.test, 'UnimplementedCall', {}), grpc.status.UNIMPLEMENTED, undefined, 'UnimplementedCall');
  },

  async unimplemented_service(c) {
    await expectError(unary(c.unimplemented, 'UnimplementedCall', {}), grpc.status.UNIMPLEMENTED, undefined, 'UnimplementedService');
  },

  async cancel_after_begin(c) {
    const result = new Promise((resolve, reject) => {
      const call = c.test.StreamingInputCall((err, res) => (err ? reject(err) : resolve(res)));
      call.cancel();
    });
    await expectError(result, grpc.status.CANCELLED, undefined, 'StreamingInputCall');
  },

  async cancel_after_first_response(c) {
    const call = c.test.FullDuplexCall();
    const done = collect(call);
    const first = nextMessage(call);
    call.write(duplexRequest(31415, 27182));
    const r = await first;
    ensure(r !== null, 'the stream ended before the first response');
    checkPayload(r.payload, 31415, 'the first response');
    call.cancel();
    await expectError(done, grpc.status.CANCELLED, undefined, 'FullDuplexCall after cancel');
  },

  async timeout_on_sleeping_server(c) {
    const call = c.test.FullDuplexCall(new grpc.Metadata(), { deadline: Date.now() + 1 });
    const done = collect(call);
    call.write({ payload: common.zeros(27182) });
    await expectError(done, grpc.status.DEADLINE_EXCEEDED, undefined, 'FullDuplexCall with a 1 ms timeout');
  },
};

async function echoStatusCalls(c, message, duplexToo) {
  const response_status = { code: 2, message };
  await expectError(unary(c.test, 'UnaryCall', { response_status }), grpc.status.UNKNOWN, message, 'UnaryCall');
  if (duplexToo) {
    const call = c.test.FullDuplexCall();
    const done = collect(call);
    call.write({ response_status });
    call.end();
    await expectError(done, grpc.status.UNKNOWN, message, 'FullDuplexCall');
  }
}

function clients(flags) {
  const target = `${flags.server_host || 'localhost'}:${flags.server_port}`;
  const options = {};
  let creds;
  if (flags.use_tls) {
    let roots = null;
    if (flags.ca_file) roots = common.read(flags.ca_file);
    else if (flags.use_test_ca) roots = common.read(`${common.CERTS}/ca.pem`);
    if (flags.server_host_override) options['grpc.ssl_target_name_override'] = flags.server_host_override;
    creds = grpc.credentials.createSsl(roots);
  } else {
    if (flags.use_test_ca || flags.ca_file) common.usage('--use_test_ca and --ca_file need --use_tls');
    creds = grpc.credentials.createInsecure();
  }
  const made = [];
  const make = (Service, opts) => {
    const client = new Service(target, creds, opts);
    made.push(client);
    return client;
  };
  return {
    test: make(testing.TestService, options),
    unimplemented: make(testing.UnimplementedService, options),
    /*
     * A new client compressing with gzip. New each time: once a grpc-js 1.14 channel has
     * seen a C-core server's `grpc-accept-encoding: identity, deflate, gzip`, it splits
     * that on ',' without trimming, finds no 'gzip', and silently stops compressing
     * (compression-filter.js, receiveMetadata).
     */
    gzip: () => make(testing.TestService, { ...options, 'grpc.default_compression_algorithm': GZIP }),
    closeAll: () => made.forEach((client) => client.close()),
  };
}

async function main(argv) {
  const flags = common.parseFlags(
    argv, ['server_host', 'server_port', 'server_host_override', 'test_case', 'ca_file'], ['use_tls', 'use_test_ca'],
  );
  for (const required of ['server_port', 'test_case']) {
    if (flags[required] === undefined) common.usage(`--${required} is required`);
  }
  const names = flags.test_case === 'all' ? CASES : flags.test_case.split(',');
  for (const name of names) {
    if (!CASES.includes(name)) common.usage(`unknown test case '${name}'; known: ${CASES.join(', ')}`);
  }
  const c = clients(flags);
  let ok = true;
  for (const name of names) {
    const start = Date.now();
    try {
      await cases[name](c);
      process.stderr.write(`interop_client.js: ${name}: passed (${Date.now() - start} ms)\n`);
    } catch (e) {
      ok = false;
      const detail = e instanceof CaseFailed ? e.message : `${e.code} ${JSON.stringify(e.details || e.message)}`;
      process.stderr.write(`interop_client.js: ${name}: FAILED: ${detail}\n`);
    }
  }
  c.closeAll();
  process.exit(ok ? 0 : 1);
}

main(process.argv.slice(2));
