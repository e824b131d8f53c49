#!/usr/bin/env node
'use strict';
/*
 * grpc-js peer: a client that checks a grpcore.test.Echo server.
 *
 * The Node twin of ../python/echo_client.py: same command line, cases,
 * output and exit codes, against a server with the Echo semantics of
 * ../python/echo_server.py, using @grpc/grpc-js (pure JavaScript).  Run
 * `npm ci` here first (scripts/setup.sh does).
 *
 * Usage:
 *   echo_client.js [--proto PATH] [--compression none|gzip|deflate]
 *                  [--tls-ca PEM [--client-cert PEM --client-key PEM]
 *                   [--server-name-override NAME]] TARGET [CASE...]
 *
 * TARGET is host:port, reached with an insecure channel, or with TLS when
 * --tls-ca is given (credentials.createSsl trusting the CA certificates in
 * that file; --server-name-override checks the server certificate against
 * NAME, channel option grpc.ssl_target_name_override; --client-cert and
 * --client-key present a client certificate for mutual TLS).  --compression sets
 * the channel's default compression for requests (channel option
 * grpc.default_compression_algorithm; default none).  CASE is one or more
 * of (none, or "all", runs every case):
 *   unary metadata status deadline unimplemented undecodable oversized
 *   client_stream server_stream bidi compressed_unary compressed_stream
 *
 * With --compression, a grpc-js 1.14 bug is worked around: it splits the
 * server's grpc-accept-encoding on "," without trimming, so the C core's
 * "identity, deflate, gzip" reads as "no gzip" and grpc-js stops compressing
 * once the first response headers of a channel arrive (on the next message of
 * that call and every later call).  tolerateSpacedAcceptEncoding() below
 * strips those spaces before grpc-js reads the header.
 *
 * Output (stdout): one line per case, `PASS <name>` or `FAIL <name>: <reason>`,
 * then `<N> passed, <M> failed`.  Notes go to stderr.  Exit status: 0 when
 * every case passed, 1 otherwise, 2 on a usage error.
 */

const path = require('path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEFAULT_PROTO = path.resolve(__dirname, '..', '..', 'proto', 'echo.proto');
const SERVICE = '/grpcore.test.Echo';
const DETAILS_KEY = 'grpc-status-details-bin';
const TIMEOUT_MS = 20000; // bound for every call that is not about deadlines
const MIB = 1024 * 1024;
const COMPRESSIBLE = Buffer.alloc(102400, 'x'); // the compressed_* cases' 100 KiB payload
// grpc-js delivers a non-OK status at once and drops the messages still
// queued behind it (grpc/grpc-node#2764, open); without a gap, compressed
// responses (inflated asynchronously) lose messages.  The bidi case waits for
// each echo before sending the next request (an event, bidiStepwise), so its
// status can only follow echoes already received.  A server stream gives the
// client nothing to wait on, so the server paces its responses (sleep_ms): a
// generous gap, as a loaded 2-core machine can take tens of ms per message.
const PACE_MS = 250;
// grpc.default_compression_algorithm values; "none" leaves the option unset.
const COMPRESSION = { none: null, deflate: 1, gzip: 2 };

const CASE_NAMES = ['unary', 'metadata', 'status', 'deadline', 'unimplemented',
  'undecodable', 'oversized', 'client_stream', 'server_stream', 'bidi',
  'compressed_unary', 'compressed_stream'];

const USAGE = 'usage: echo_client.js [-h] [--proto PROTO] [--compression {deflate,gzip,none}]\n' +
  '                      [--tls-ca PEM [--client-cert PEM --client-key PEM] [--server-name-override NAME]]\n' +
  '                      TARGET [CASE ...]';
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

class CaseFailed extends Error {}

function check(cond, reason) {
  if (!cond) throw new CaseFailed(reason);
}

function note(msg) {
  process.stderr.write(`echo_client: ${msg}\n`);
}

function usageError(msg) {
  process.stderr.write(`${USAGE}\necho_client.js: error: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = {
    proto: DEFAULT_PROTO, compression: 'none', positional: [],
    tlsCa: null, clientCert: null, clientKey: null, serverNameOverride: null,
  };
  let options = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!options || !arg.startsWith('-') || arg === '-') {
      args.positional.push(arg);
      continue;
    }
    if (arg === '--') {
      options = false;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      if (eq > 0) return arg.slice(eq + 1);
      if (i + 1 >= argv.length) usageError(`argument ${name}: expected one argument`);
      i += 1;
      return argv[i];
    };
    if (name === '-h' || name === '--help') {
      process.stdout.write(`${USAGE}\n\ncases: ${CASE_NAMES.join(' ')} (none or 'all' = every case)\n`);
      process.exit(0);
    } else if (name === '--proto') {
      args.proto = value();
    } else if (name === '--compression') {
      args.compression = value();
      if (!(args.compression in COMPRESSION)) {
        usageError(`argument --compression: invalid choice: '${args.compression}' ` +
          '(choose from deflate, gzip, none)');
      }
    } else if (name === '--tls-ca') {
      args.tlsCa = value();
    } else if (name === '--client-cert') {
      args.clientCert = value();
    } else if (name === '--client-key') {
      args.clientKey = value();
    } else if (name === '--server-name-override') {
      args.serverNameOverride = value();
    } else {
      usageError(`unrecognized arguments: ${arg}`);
    }
  }
  if (Boolean(args.clientCert) !== Boolean(args.clientKey)) {
    usageError('--client-cert and --client-key go together');
  }
  if ((args.clientCert || args.serverNameOverride) && !args.tlsCa) {
    usageError('--client-cert and --server-name-override need --tls-ca');
  }
  if (args.positional.length === 0) usageError('the following arguments are required: TARGET');
  args.target = args.positional[0];
  args.cases = args.positional.slice(1);
  return args;
}

/* ---- calls as promises ---------------------------------------------------- */

const deadline = (ms = TIMEOUT_MS) => ({ deadline: Date.now() + ms });

function toMetadata(pairs = []) {
  const md = new grpc.Metadata();
  for (const [k, v] of pairs) md.add(k, v);
  return md;
}

/**
 * Waits for a call's outcome: { response | responses, initial, trailing, error }.
 * error is the grpc-js error (code, details, metadata = trailers) or null.
 */
function outcome(call, { streaming, callbackResult }) {
  return new Promise((resolve) => {
    const responses = [];
    let initial = null;
    let status = null;
    let error = null;
    let ended = !streaming;
    const maybeDone = () => {
      if (status === null || !ended) return;
      if (callbackResult && !callbackResult.done) return;
      if (callbackResult) error = callbackResult.error;
      resolve({
        response: callbackResult ? callbackResult.response : undefined,
        responses, initial, error,
        trailing: status.metadata,
      });
    };
    call.on('metadata', (md) => { initial = md; });
    if (streaming) {
      call.on('data', (m) => responses.push(m));
      call.on('end', () => { ended = true; maybeDone(); });
      // An error status is emitted after push(null): messages still queued
      // are delivered before 'end', which does not come after an error; give
      // them a turn of the event loop.
      call.on('error', (e) => {
        error = e;
        setImmediate(() => { ended = true; maybeDone(); });
      });
    }
    call.on('status', (s) => { status = s; maybeDone(); });
    if (callbackResult) callbackResult.onDone = maybeDone;
  });
}

function callbackSlot() {
  const slot = { done: false, response: null, error: null, onDone: () => {} };
  slot.callback = (err, resp) => {
    slot.done = true;
    slot.error = err || null;
    slot.response = resp === undefined ? null : resp;
    slot.onDone();
  };
  return slot;
}

class Echo {
  constructor(client) {
    this.client = client;
  }

  unary(req, { md = [], options = deadline() } = {}) {
    const slot = callbackSlot();
    const call = this.client.Unary(req, toMetadata(md), options, slot.callback);
    return outcome(call, { streaming: false, callbackResult: slot });
  }

  raw(methodPath, bytes, { options = deadline() } = {}) {
    const slot = callbackSlot();
    const same = (b) => b;
    const call = this.client.makeUnaryRequest(methodPath, same, same, bytes,
      new grpc.Metadata(), options, slot.callback);
    return outcome(call, { streaming: false, callbackResult: slot });
  }

  clientStream(reqs, { md = [], options = deadline() } = {}) {
    const slot = callbackSlot();
    const call = this.client.ClientStream(toMetadata(md), options, slot.callback);
    const done = outcome(call, { streaming: false, callbackResult: slot });
    for (const r of reqs) call.write(r);
    call.end();
    return done;
  }

  serverStream(req, { md = [], options = deadline() } = {}) {
    const call = this.client.ServerStream(req, toMetadata(md), options);
    return outcome(call, { streaming: true });
  }

  bidi(reqs, { md = [], options = deadline() } = {}) {
    const call = this.client.Bidi(toMetadata(md), options);
    const done = outcome(call, { streaming: true });
    for (const r of reqs) call.write(r);
    call.end();
    return done;
  }

  /**
   * A Bidi call that sends each of the first `echoed` requests only once the
   * echo of the one before it arrived, then the rest at once and half-closes.
   */
  bidiStepwise(reqs, echoed, { md = [], options = deadline() } = {}) {
    const call = this.client.Bidi(toMetadata(md), options);
    const done = outcome(call, { streaming: true });
    let next = 0;
    const sendNext = () => {
      if (next < echoed) {
        call.write(reqs[next++]);
        return;
      }
      if (next === reqs.length) return;
      while (next < reqs.length) call.write(reqs[next++]);
      call.end();
    };
    call.on('data', sendNext);
    sendNext();
    return done;
  }
}

/* ---- checks ---------------------------------------------------------------- */

const codeName = (code) => CODE_NAMES[code] || String(code);
const show = (v) => (Buffer.isBuffer(v) ? `<Buffer ${v.toString('hex')}>` : JSON.stringify(v));

function same(a, b) {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return a === b;
}

/** The value of key if it occurs exactly once, else the list (or null). */
function metadataValue(md, key) {
  const values = md ? md.get(key) : [];
  if (values.length === 1) return values[0];
  return values.length ? values : null;
}

function ok(result) {
  if (result.error) {
    const e = result.error;
    throw new CaseFailed(`unexpected status ${codeName(e.code)}: ${e.details}`);
  }
  return result;
}

function failed(result) {
  check(result.error, 'call succeeded but an error status was expected');
  return result.error;
}

function echoMd(tag) {
  return [['x-echo-call', tag],
    ['x-echo-call-bin', Buffer.concat([Buffer.from([0]), Buffer.from(tag), Buffer.from([0xff])])]];
}

/** Each x-echo-K: V sent is back once as x-echo-K (initial) and x-trailer-K (trailing). */
function checkEchoed(what, sent, initial, trailing) {
  for (const [key, want] of sent) {
    const trailerKey = `x-trailer-${key.slice('x-echo-'.length)}`;
    for (const [where, md, k] of [['initial', initial, key], ['trailing', trailing, trailerKey]]) {
      const got = metadataValue(md, k);
      check(same(got, want), `${what}: ${where} metadata ${k} = ${show(got)}, want ${show(want)}`);
    }
  }
}

function checkStatus(what, err, code, message, details) {
  check(err.code === code, `${what}: code ${codeName(err.code)}, want ${codeName(code)}`);
  check(err.details === message, `${what}: message ${show(err.details)}, want ${show(message)}`);
  const got = metadataValue(err.metadata, DETAILS_KEY);
  check(details ? same(got, details) : got === null,
    `${what}: trailing ${DETAILS_KEY} = ${got === null ? 'none' : show(got)}, ` +
    `want ${details ? show(details) : 'none'}`);
}

const triple = (r) => [r.message, String(r.seq), Buffer.from(r.payload)];

/** '' when the lists of [message, seq, payload] are equal, else where they part. */
function differ(got, want) {
  if (got.length !== want.length) {
    return `${got.length} responses, want ${want.length}; seqs [${got.map((g) => g[1]).join(', ')}]`;
  }
  for (let i = 0; i < got.length; i++) {
    const [g, w] = [got[i], want[i]];
    if (g[0] !== w[0] || g[1] !== w[1] || !g[2].equals(w[2])) {
      return `response ${i}: (message, seq, payload bytes) = (${show(g[0])}, ${g[1]}, ${g[2].length}), ` +
        `want (${show(w[0])}, ${w[1]}, ${w[2].length})` +
        (g[2].length === w[2].length && !g[2].equals(w[2]) ? ', payload differs' : '');
    }
  }
  return '';
}

function checkTriples(what, got, want) {
  const d = differ(got.map(triple), want.map(triple));
  check(d === '', `${what}${what ? ': ' : ''}${d}`);
}

const req = (fields) => ({ message: '', seq: '0', payload: Buffer.alloc(0), ...fields });
const resp = (message, seq, payload = Buffer.alloc(0)) => ({ message, seq: String(seq), payload });

/* ---- cases ------------------------------------------------------------------- */

function makeCases(echo) {
  return {
    async unary() {
      const big = Buffer.alloc(MIB);
      for (let i = 0; i < MIB; i++) big[i] = i % 256;
      for (const [name, sent] of [
        ['small', req({ message: 'hello', seq: '42', payload: Buffer.from([0, 1, 2]) })],
        ['empty', req({})],
        ['negative seq', req({ message: 'neg', seq: '-9223372036854775808' })],
        ['1 MiB', req({ message: 'big', seq: '7', payload: big })],
      ]) {
        const { response } = ok(await echo.unary(sent));
        check(response.message === sent.message,
          `${name}: message ${show(response.message)} != ${show(sent.message)}`);
        check(String(response.seq) === sent.seq, `${name}: seq ${response.seq} != ${sent.seq}`);
        check(response.payload.equals(sent.payload),
          `${name}: payload differs (${response.payload.length} vs ${sent.payload.length} bytes)`);
      }
    },

    async metadata() {
      const binary = Buffer.from([0x00, 0x01, 0xfe, 0xff]);
      const r = ok(await echo.unary(req({ message: 'md', seq: '1' }),
        { md: [['x-echo-ascii', 'hello'], ['x-echo-data-bin', binary]] }));
      for (const [where, md, key, want] of [
        ['initial', r.initial, 'x-echo-ascii', 'hello'],
        ['initial', r.initial, 'x-echo-data-bin', binary],
        ['trailing', r.trailing, 'x-trailer-ascii', 'hello'],
        ['trailing', r.trailing, 'x-trailer-data-bin', binary],
      ]) {
        const got = metadataValue(md, key);
        check(same(got, want), `${where} metadata ${key} = ${show(got)}, want ${show(want)}`);
      }
    },

    async status() {
      const message = 'precondition: é ünïcode';
      const details = Buffer.from('\x08\x09detail\x00\xff', 'latin1');
      const err = failed(await echo.unary(req({
        message: 'fail', fail_code: grpc.status.FAILED_PRECONDITION,
        fail_message: message, fail_details: details,
      })));
      checkStatus('status', err, grpc.status.FAILED_PRECONDITION, message, details);
    },

    async deadline() {
      // The handler would answer after 10 s; 5 s leaves a loaded machine room and still
      // tells the 200 ms deadline from the answer.
      const start = Date.now();
      const err = failed(await echo.unary(req({ message: 'slow', sleep_ms: 10000 }),
        { options: deadline(200) }));
      const elapsed = (Date.now() - start) / 1000;
      check(err.code === grpc.status.DEADLINE_EXCEEDED,
        `code ${codeName(err.code)}, want DEADLINE_EXCEEDED`);
      check(elapsed < 5, `call took ${elapsed.toFixed(2)}s, want < 5s`);
    },

    async unimplemented() {
      for (const p of [`${SERVICE}/NoSuchMethod`, '/grpcore.test.NoSuchService/Unary']) {
        const err = failed(await echo.raw(p, Buffer.alloc(0)));
        check(err.code === grpc.status.UNIMPLEMENTED,
          `${p}: code ${codeName(err.code)}, want UNIMPLEMENTED`);
      }
    },

    async undecodable() {
      const err = failed(await echo.raw(`${SERVICE}/Unary`, Buffer.from([0xff, 0xff, 0xff])));
      check([grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT].includes(err.code),
        `code ${codeName(err.code)}, want INTERNAL or INVALID_ARGUMENT`);
      note(`undecodable: server answered ${codeName(err.code)} (${show(err.details)})`);
    },

    async oversized() {
      const err = failed(await echo.unary(req({
        message: 'huge', payload: Buffer.alloc(4 * MIB + 1, 0x5a),
      })));
      check(err.code === grpc.status.RESOURCE_EXHAUSTED,
        `code ${codeName(err.code)}, want RESOURCE_EXHAUSTED`);
    },

    async client_stream() {
      // 50 requests: the joined messages and concatenated payloads prove order.
      const sent = [...Array(50).keys()].map((i) =>
        req({ message: `m${i}`, seq: String(i), payload: Buffer.from([i]) }));
      let md = echoMd('client_stream');
      const r = ok(await echo.clientStream(sent, { md }));
      const want = sent.map((s) => s.message).join(',');
      check(r.response.message === want, `message ${show(r.response.message)}, want ${show(want)}`);
      check(String(r.response.seq) === '50', `seq ${r.response.seq}, want 50`);
      check(r.response.payload.equals(Buffer.from([...Array(50).keys()])),
        `payload ${show(r.response.payload)}, want bytes 0..49`);
      checkEchoed('ok', md, r.initial, r.trailing);
      // No request at all.
      const empty = ok(await echo.clientStream([])).response;
      checkTriples('empty stream', [empty], [resp('', 0)]);
      // A failing request ends the call with its status after the ones before it.
      md = echoMd('client_stream-fail');
      const f = await echo.clientStream([
        req({ message: 'a' }),
        req({ message: 'b', fail_code: grpc.status.ABORTED, fail_message: 'stop at b',
          fail_details: Buffer.from([1, 0x63, 0x73, 0]) }),
      ], { md });
      const err = failed(f);
      checkStatus('fail', err, grpc.status.ABORTED, 'stop at b', Buffer.from([1, 0x63, 0x73, 0]));
      checkEchoed('fail', md, f.initial, err.metadata);
    },

    async server_stream() {
      let md = echoMd('server_stream');
      let r = ok(await echo.serverStream(req({ message: 's', seq: '5', response_size: 3 }), { md }));
      checkTriples('response_size', r.responses,
        [0, 1, 2, 3, 4].map((i) => resp('s', i, Buffer.from('xxx'))));
      checkEchoed('ok', md, r.initial, r.trailing);
      // The request's payload is echoed in every response when response_size is 0.
      const pl = Buffer.from([0, 0x70, 0x6c, 0xff]);
      r = ok(await echo.serverStream(req({ message: 'p', seq: '3', payload: pl })));
      checkTriples('payload echo', r.responses, [0, 1, 2].map((i) => resp('p', i, pl)));
      r = ok(await echo.serverStream(req({ message: 'none', seq: '0' })));
      checkTriples('seq=0', r.responses, []);
      // Five responses 0..4, then the status the request asked for.
      md = echoMd('server_stream-fail');
      const message = 'end of range: é';
      const details = Buffer.from([2, 0x73, 0x73, 0, 0xff]);
      r = await echo.serverStream(req({
        message: 'f', seq: '5', payload: Buffer.from('fp'), sleep_ms: PACE_MS,
        fail_code: grpc.status.OUT_OF_RANGE, fail_message: message, fail_details: details,
      }), { md });
      const err = failed(r);
      checkStatus('fail', err, grpc.status.OUT_OF_RANGE, message, details);
      checkEchoed('fail', md, r.initial, err.metadata);
      checkTriples('before the status', r.responses,
        [0, 1, 2, 3, 4].map((i) => resp('f', i, Buffer.from('fp'))));
    },

    async bidi() {
      let md = echoMd('bidi');
      const sent = [...Array(20).keys()].map((i) =>
        req({ message: `m${i}`, seq: String(i), payload: Buffer.alloc(i + 1, i) }));
      let r = ok(await echo.bidi(sent, { md }));
      checkTriples('all at once', r.responses, sent);
      checkEchoed('ok', md, r.initial, r.trailing);
      await bidiPingPong(echo);
      // Echoes of the requests before the failing one, then its status.
      md = echoMd('bidi-fail');
      const details = Buffer.from([3, 0x62, 0x64]);
      r = await echo.bidiStepwise([
        req({ message: 'm1', seq: '1', payload: Buffer.from('1') }),
        req({ message: 'm2', seq: '2', payload: Buffer.from('2') }),
        req({ message: 'bad', seq: '3', fail_code: grpc.status.DATA_LOSS,
          fail_message: 'mid-stream', fail_details: details }),
        req({ message: 'never', seq: '4' }),
      ], 2, { md });
      const err = failed(r);
      checkStatus('fail', err, grpc.status.DATA_LOSS, 'mid-stream', details);
      checkEchoed('fail', md, r.initial, err.metadata);
      checkTriples('before the status', r.responses,
        [resp('m1', 1, Buffer.from('1')), resp('m2', 2, Buffer.from('2'))]);
    },

    async compressed_unary() {
      const { response } = ok(await echo.unary(
        req({ message: 'compressed', seq: '1', payload: COMPRESSIBLE })));
      checkTriples('', [response], [resp('compressed', 1, COMPRESSIBLE)]);
    },

    async compressed_stream() {
      const sent = [0, 1, 2].map((i) => req({ message: `c${i}`, seq: String(i), payload: COMPRESSIBLE }));
      const r = ok(await echo.bidi(sent));
      checkTriples('', r.responses, sent);
    },
  };
}

/** Each request is sent only once the echo of the previous one arrived. */
function bidiPingPong(echo) {
  const call = echo.client.Bidi(new grpc.Metadata(), deadline());
  const done = outcome(call, { streaming: true });
  let stalled = null;
  let timer = null;
  const send = (i) => {
    call.write(req({ message: `p${i}`, seq: String(i) }));
    timer = setTimeout(() => { stalled = i; call.end(); }, TIMEOUT_MS / 2);
  };
  let n = 0;
  call.on('data', () => {
    clearTimeout(timer);
    n += 1;
    if (stalled !== null) return;
    if (n < 5) send(n);
    else call.end();
  });
  send(0);
  return done.then((r) => {
    clearTimeout(timer);
    ok(r);
    check(stalled === null,
      `ping-pong: no echo of p${stalled} within ${TIMEOUT_MS / 2000}s of sending it`);
    checkTriples('ping-pong', r.responses, [0, 1, 2, 3, 4].map((i) => resp(`p${i}`, i)));
  });
}

/** The workaround described in the header comment. */
function tolerateSpacedAcceptEncoding() {
  const internals = require('@grpc/grpc-js/build/src/compression-filter');
  const proto = internals.CompressionFilter && internals.CompressionFilter.prototype;
  if (!proto || typeof proto.receiveMetadata !== 'function') {
    throw new Error('grpc-js internals changed: cannot normalize grpc-accept-encoding');
  }
  const receiveMetadata = proto.receiveMetadata;
  proto.receiveMetadata = function (metadata) {
    const values = metadata.get('grpc-accept-encoding');
    if (values.length > 0) {
      const list = values.join(',').split(',').map((s) => s.trim()).filter(Boolean);
      metadata.set('grpc-accept-encoding', list.join(','));
    }
    return receiveMetadata.call(this, metadata);
  };
}

/* ---- main -------------------------------------------------------------------- */

function loadClientClass(protoPath) {
  const definition = protoLoader.loadSync(protoPath, {
    keepCase: true,
    longs: String,
    bytes: Buffer,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).grpcore.test.Echo;
}

const oneLine = (text) => String(text).split(/\s+/).filter(Boolean).join(' ');

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let names = args.cases.length ? args.cases : ['all'];
  if (names.includes('all')) names = CASE_NAMES;

  const EchoClient = loadClientClass(args.proto);
  const options = {};
  if (COMPRESSION[args.compression] !== null) {
    options['grpc.default_compression_algorithm'] = COMPRESSION[args.compression];
    tolerateSpacedAcceptEncoding();
  }
  let credentials = grpc.credentials.createInsecure();
  if (args.tlsCa) {
    const fs = require('fs');
    credentials = grpc.credentials.createSsl(
      fs.readFileSync(args.tlsCa),
      args.clientKey ? fs.readFileSync(args.clientKey) : null,
      args.clientCert ? fs.readFileSync(args.clientCert) : null);
    if (args.serverNameOverride) options['grpc.ssl_target_name_override'] = args.serverNameOverride;
  }
  const client = new EchoClient(args.target, credentials, options);
  const cases = makeCases(new Echo(client));
  let passed = 0;
  let failedCount = 0;
  for (const name of names) {
    let reason = null;
    if (!CASE_NAMES.includes(name)) {
      reason = `unknown case (known: ${CASE_NAMES.join(', ')})`;
    } else {
      try {
        await cases[name]();
      } catch (err) {
        if (err instanceof CaseFailed) {
          reason = err.message;
        } else {
          process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
          reason = `${err && err.name ? err.name : 'Error'}: ${err && err.message ? err.message : err}`;
        }
      }
    }
    if (reason === null) {
      passed += 1;
      process.stdout.write(`PASS ${name}\n`);
    } else {
      failedCount += 1;
      process.stdout.write(`FAIL ${name}: ${oneLine(reason)}\n`);
    }
  }
  client.close();
  process.stdout.write(`${passed} passed, ${failedCount} failed\n`, () => {
    process.exit(failedCount === 0 ? 0 : 1);
  });
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
