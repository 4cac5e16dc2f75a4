'use strict';
// A Node.js client of the p2pos app API (spec/appapi.md), with Node's standard library only.
//
//   const { Client } = require('./p2pos.js');
//   const client = Client.fromEnv();               // or new Client({ socketPath }) / ({ url, token })
//   await client.status();
//   await client.putService('echo', { allowAny: true });
//   const { peer, socket } = await client.accept('echo');   // socket: the channel (a net.Socket)
//   const channel = await client.connect(peerId, 'echo');
//   const events = await client.events(0, (event) => console.log(event));  // events.close()
//
// Every call opens its own connection (the daemon is local).  A refusal rejects with a
// P2posError whose .code is the API's stable code (§2.1) and .status the HTTP status; a daemon
// that is not there is .code 'daemon_not_running', a connection that broke 'connection_broken'
// (both .status 0).  A channel is half-closeable: socket.end() finishes our sending side,
// 'end' says the peer finished its own (§4).

const http = require('node:http');
const path = require('node:path');

const STREAM_PROTOCOL = 'p2pos-stream/1';

class P2posError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'P2posError';
    this.status = status;
    this.code = code;
  }
}

function errorFrom(status, text) {
  let error = {};
  try {
    error = JSON.parse(text).error || {};
  } catch (_) { /* not JSON: fall back on the status (§2.1: unknown codes go by class) */ }
  return new P2posError(status, error.code || 'http_error', error.message || `HTTP ${status}`);
}

const seg = (text) => encodeURIComponent(text);

class Client {
  // { socketPath } (no token needed), or { url: 'http://127.0.0.1:PORT', token }.
  constructor({ socketPath, url, token } = {}) {
    if (!socketPath && !url) throw new Error('give socketPath or url');
    this.socketPath = socketPath;
    this.url = url ? new URL(url) : null;
    this.token = token;
  }

  // A plugin's environment (§7), else P2POS_HOME's run/api.sock.
  static fromEnv(env = process.env) {
    if (env.P2POS_API_SOCKET) return new Client({ socketPath: env.P2POS_API_SOCKET });
    if (env.P2POS_API_URL) return new Client({ url: env.P2POS_API_URL, token: env.P2POS_API_TOKEN });
    if (env.P2POS_HOME) return new Client({ socketPath: path.join(env.P2POS_HOME, 'run', 'api.sock') });
    throw new Error('set P2POS_API_SOCKET (HOME/run/api.sock) or P2POS_API_URL and P2POS_API_TOKEN');
  }

  status() { return this._json('GET', '/v1/status'); }
  services() { return this._json('GET', '/v1/services'); }
  plugins() { return this._json('GET', '/v1/plugins'); }
  deleteService(name) { return this._json('DELETE', `/v1/services/${seg(name)}`); }

  // { allow: [PEERID, ...] } or { allowAny: true }; kind 'stream' (default) or 'message'.
  putService(name, { allow, allowAny = false, kind = 'stream' } = {}) {
    const body = { kind };
    if (allow) body.allow = allow;
    if (allowAny) body.allow_any = true;
    return this._json('PUT', `/v1/services/${seg(name)}`, body);
  }

  // The next channel a peer opens to `service`: { peer, socket }.
  accept(service) { return this._upgrade(`/v1/services/${seg(service)}/accept`); }

  async connect(peer, service) {
    const { socket } = await this._upgrade(`/v1/peers/${seg(peer)}/services/${seg(service)}/connect`);
    return socket;
  }

  // Calls onEvent(event) for each event after `after` (undefined: only new ones), §5.  Resolves
  // once the stream is open to { close(), done }: done resolves when the daemon ends the stream.
  events(after, onEvent) {
    const query = after === undefined || after === null ? '' : `?after=${Number(after)}`;
    return new Promise((resolve, reject) => {
      const req = this._request('GET', `/v1/events${query}`);
      req.on('error', (err) => reject(this._connectionError(err)));
      req.on('response', (res) => {
        if (res.statusCode !== 200) return readAll(res, (text) => reject(errorFrom(res.statusCode, text)));
        let buffer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          const lines = (buffer + chunk).split('\n');
          buffer = lines.pop();
          for (const line of lines) if (line.trim()) onEvent(JSON.parse(line));
        });
        const done = new Promise((ended) => {
          for (const name of ['end', 'close', 'error']) res.on(name, () => ended());
        });
        resolve({ close: () => req.destroy(), done });
      });
      req.end();
    });
  }

  // -- HTTP ------------------------------------------------------------------------------------

  _request(method, target, headers = {}) {
    const options = { method, path: target, agent: false, headers: { ...headers } };
    if (this.socketPath) {
      options.socketPath = this.socketPath;
      options.headers.Host = 'localhost';
    } else {
      options.host = this.url.hostname;
      options.port = this.url.port || 80;
      if (this.token) options.headers.Authorization = `Bearer ${this.token}`;
    }
    return http.request(options);
  }

  _connectionError(err) {
    if (err instanceof P2posError) return err;
    const where = this.socketPath || this.url.href;
    const wrapped = ['ENOENT', 'ECONNREFUSED'].includes(err.code)
      ? new P2posError(0, 'daemon_not_running', `the daemon is not running (${where}: ${err.message})`)
      : new P2posError(0, 'connection_broken', `the connection to the daemon broke (${where}: ${err.message})`);
    wrapped.cause = err;
    return wrapped;
  }

  _json(method, target, body) {
    const payload = body === undefined ? '' : JSON.stringify(body);
    const headers = { 'Content-Length': Buffer.byteLength(payload) };
    if (payload) headers['Content-Type'] = 'application/json';
    return new Promise((resolve, reject) => {
      const req = this._request(method, target, headers);
      req.on('error', (err) => reject(this._connectionError(err)));
      req.on('response', (res) => readAll(res, (text) => {
        if (res.statusCode >= 400) return reject(errorFrom(res.statusCode, text));
        try {
          resolve(text ? JSON.parse(text) : null);
        } catch (err) {
          reject(new P2posError(res.statusCode, 'bad_response', `${method} ${target}: no JSON (${err.message})`));
        }
      }));
      req.end(payload);
    });
  }

  // POST with `Upgrade: p2pos-stream/1`: on 101 the connection is the channel (§4).
  _upgrade(target) {
    const headers = { Connection: 'Upgrade', Upgrade: STREAM_PROTOCOL, 'Content-Length': 0 };
    return new Promise((resolve, reject) => {
      const req = this._request('POST', target, headers);
      req.on('error', (err) => reject(this._connectionError(err)));
      req.on('upgrade', (res, socket, head) => {
        if (head && head.length) socket.unshift(head); // bytes the peer sent right after the 101
        socket.allowHalfOpen = true; // the peer's end is not ours: socket.end() is the caller's to call
        socket.setTimeout(0);
        resolve({ peer: res.headers['p2pos-peer'] || '', socket });
      });
      req.on('response', (res) => readAll(res, (text) => reject(
        res.statusCode >= 400 ? errorFrom(res.statusCode, text)
          : new P2posError(res.statusCode, 'bad_response', `expected 101, got ${res.statusCode}`))));
      req.end();
    });
  }
}

function readAll(res, then) {
  const chunks = [];
  res.on('data', (chunk) => chunks.push(chunk));
  res.on('end', () => then(Buffer.concat(chunks).toString('utf8')));
}

module.exports = { Client, P2posError, STREAM_PROTOCOL };
