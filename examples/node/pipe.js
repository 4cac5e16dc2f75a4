#!/usr/bin/env node
'use strict';
// A netcat for p2pos channels (spec/appapi.md §4), on the Node.js client in p2pos.js.
//
//   node pipe.js PEER SERVICE                         stdin -> the channel -> stdout
//   node pipe.js --serve SERVICE (--allow-any | --allow PEER ...)   echo each channel back
//
// The daemon is found by P2POS_API_SOCKET (HOME/run/api.sock), or P2POS_API_URL and
// P2POS_API_TOKEN, or P2POS_HOME (see README.md).  The end of stdin half-closes the channel;
// the program ends once that is done and the peer has finished sending too.  Exit status:
// 0 done, 1 refused or broken, 2 bad usage, 3 no daemon.

const { Client } = require('./p2pos.js');

const USAGE = 'usage: node pipe.js PEER SERVICE | node pipe.js --serve SERVICE (--allow-any | --allow PEER ...)';

function fail(message, status = 1) {
  process.stderr.write(`pipe.js: ${message}\n`);
  process.exit(status);
}

function failWith(err) {
  if (err.code === 'daemon_not_running') fail(err.message, 3);
  fail(err.status ? `${err.code}: ${err.message}` : err.message); // the API's stable code first (§2.1)
}

async function pipe(client, peer, service) {
  const channel = await client.connect(peer, service);
  channel.on('error', (err) => fail(`the channel broke: ${err.message}`));
  // Done when both directions are: stdin's end half-closes the channel ('finish'), and the peer
  // half-closes its side ('end'); either may come first (p2pos pipe does the same).
  let directions = 2;
  const oneDone = () => {
    directions -= 1;
    if (directions === 0) process.stdout.write('', () => process.exit(0)); // once stdout has it all
  };
  channel.on('finish', oneDone);
  channel.on('end', oneDone);
  process.stdin.pipe(channel); // channel.end() at stdin's end
  channel.pipe(process.stdout, { end: false });
}

// Echo every channel back: one at a time is taken, each is then served while the next waits.
async function serve(client, service, allow) {
  await client.putService(service, allow);
  process.stderr.write(`serving ${service}\n`);
  const stop = () => client.deleteService(service).catch(() => {}).finally(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  for (;;) {
    const { peer, socket } = await client.accept(service);
    process.stderr.write(`channel from ${peer}\n`);
    socket.on('error', (err) => process.stderr.write(`channel from ${peer} broke: ${err.message}\n`));
    socket.pipe(socket); // the peer's half-close ends our side once all is echoed
  }
}

function main(argv) {
  let client;
  try {
    client = Client.fromEnv();
  } catch (err) {
    return fail(err.message, 2);
  }
  if (argv[0] === '--serve') {
    const [, service, ...rest] = argv;
    const allow = [];
    let allowAny = false;
    for (let i = 0; i < rest.length; i += 1) {
      if (rest[i] === '--allow-any') allowAny = true;
      else if (rest[i] === '--allow' && i + 1 < rest.length) allow.push(rest[(i += 1)]);
      else return fail(`unexpected ${rest[i]}\n${USAGE}`, 2);
    }
    if (!service || allowAny === (allow.length > 0)) return fail(`say who may connect\n${USAGE}`, 2);
    return serve(client, service, allowAny ? { allowAny } : { allow }).catch(failWith);
  }
  if (argv.length !== 2 || argv[0].startsWith('-')) return fail(USAGE, 2);
  return pipe(client, argv[0], argv[1]).catch(failWith);
}

main(process.argv.slice(2));
