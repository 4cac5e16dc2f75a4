'use strict';
// The echo-node plugin: registers the service "echo-node" for any peer and echoes every channel.
//
// The daemon starts it with the API's address in its environment (spec/appapi.md §7:
// P2POS_API_SOCKET, P2POS_API_URL, P2POS_API_TOKEN, P2POS_PEER_ID, P2POS_PLUGIN); its output
// goes to HOME/logs/plugin-echo-node.log.  Any failure ends it with status 1 and the daemon
// starts it again after a back-off; SIGTERM (the daemon's stop) removes the service first.

const fs = require('node:fs');
const path = require('node:path');

// The client library: p2pos.js beside this file (as installed, see README.md), else the copy in
// the repository's examples/node/ when it runs in place.
const library = [path.join(__dirname, 'p2pos.js'), path.join(__dirname, '..', '..', 'node', 'p2pos.js')]
  .find((candidate) => fs.existsSync(candidate));
if (!library) {
  process.stderr.write('echo-node: p2pos.js not found: copy examples/node/p2pos.js beside echo.js\n');
  process.exit(1);
}
const { Client } = require(library);

const SERVICE = 'echo-node';

function log(message) {
  process.stdout.write(`${new Date().toISOString()} echo-node: ${message}\n`);
}

async function main() {
  const client = Client.fromEnv();
  await client.putService(SERVICE, { allowAny: true });
  log(`serving ${SERVICE} for any peer on daemon ${process.env.P2POS_PEER_ID || '?'}`);
  process.on('SIGTERM', () => {
    client.deleteService(SERVICE).catch(() => {}).finally(() => process.exit(0));
  });
  for (;;) {
    const { peer, socket } = await client.accept(SERVICE);
    log(`channel from ${peer}`);
    let bytes = 0;
    socket.on('data', (chunk) => { bytes += chunk.length; });
    socket.on('end', () => log(`channel from ${peer}: ${bytes} bytes received, all echoed`));
    socket.on('error', (err) => log(`channel from ${peer} broke: ${err.message}`));
    socket.pipe(socket); // the peer's half-close ends our side once all is echoed
  }
}

main().catch((err) => {
  log(`failed: ${err.code || ''} ${err.message}`);
  process.exit(1);
});
