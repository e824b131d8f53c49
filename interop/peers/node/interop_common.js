'use strict';
/*
 * What the grpc-js interop server and client share: the grpc.testing services loaded from
 * ../../proto with @grpc/proto-loader, the flag syntax of interop binaries, and the
 * built-in test certificates.
 */

const fs = require('fs');
const path = require('path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const CRATE = path.resolve(__dirname, '..', '..');
const PROTO_ROOT = path.join(CRATE, 'proto');
const CERTS = path.join(CRATE, 'certs');

const ECHO_INITIAL_KEY = 'x-grpc-test-echo-initial';
const ECHO_TRAILING_KEY = 'x-grpc-test-echo-trailing-bin';

/** The grpc.testing package: TestService, UnimplementedService (with their .service). */
function loadTesting() {
  const definition = protoLoader.loadSync('grpc/testing/test.proto', {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: Number,
    enums: Number,
    // Unset scalars read as 0/''/empty, unset messages (the BoolValue flags) as null.
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).grpc.testing;
}

/** Interop flag syntax: --name=value or --name value; booleans may stand alone. */
function parseFlags(argv, values, bools) {
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) usage(`unexpected argument '${arg}' (flags look like --name=value)`);
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    let value = eq > 0 ? arg.slice(eq + 1) : undefined;
    if (bools.includes(name)) {
      if (value === undefined) {
        value = 'true';
        if (argv[i + 1] === 'true' || argv[i + 1] === 'false') value = argv[++i];
      }
      if (!['true', 'false', '1', '0'].includes(value)) usage(`--${name}: expected true or false, got '${value}'`);
      flags[name] = value === 'true' || value === '1';
    } else if (values.includes(name)) {
      if (value === undefined) {
        if (i + 1 >= argv.length) usage(`--${name} needs a value`);
        value = argv[++i];
      }
      flags[name] = value;
    } else {
      usage(`unknown flag --${name}`);
    }
  }
  return flags;
}

function usage(msg) {
  process.stderr.write(`${path.basename(process.argv[1])}: ${msg}\n`);
  process.exit(2);
}

function zeros(size) {
  return { type: 0, body: Buffer.alloc(size) };
}

module.exports = {
  grpc, CERTS, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, loadTesting, parseFlags, usage, zeros,
  read: (p) => fs.readFileSync(p),
};
