/**
 * The Node entry of `@pmdaemon/client`: {@link connect} reaches a daemon
 * over gRPC (HTTP/2, from `@connectrpc/connect-node`), locally on its Unix
 * socket as `pmd` does, or remotely on its TCP listener (TLS or h2c) with
 * a bearer token. The typed client, the errors and the generated messages
 * are re-exported from here.
 *
 * Locally no token is needed: the daemon checks the caller's uid on the
 * socket (`$PMDAEMON_HOME/pmd.sock`, default `~/.pmdaemon`).
 *
 * @module
 */

import { existsSync, readFileSync } from "node:fs";
import { createConnection } from "node:net";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { Code } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { bearer, Client } from "./client.js";
import { Unavailable } from "./errors.js";

export * from "./client.js";
export * from "./errors.js";
export * from "./gen/pmdaemon/v1/process_manager_pb.js";
export { Code } from "@connectrpc/connect";

/** The variable that names the daemon's home, as for `pmd`. */
export const HOME_ENV = "PMDAEMON_HOME";
/** The daemon's gRPC socket inside its home. */
export const SOCKET_NAME = "pmd.sock";

/** `$PMDAEMON_HOME`, else `~/.pmdaemon`, as `pmd` finds it. */
export function defaultHome(): string {
  const home = process.env[HOME_ENV];
  return home ? home : join(homedir(), ".pmdaemon");
}

/** Where and how to reach a daemon. */
export interface ConnectOptions {
  /**
   * A daemon's TCP listener (`pmdaemond --listen`): `https://HOST:PORT`
   * or a bare `HOST:PORT` (TLS, as `pmd --host`), `http://HOST:PORT` (h2c:
   * the token in clear text). Unset: the local daemon's Unix socket.
   */
  host?: string;
  /** The local daemon's home (default `$PMDAEMON_HOME`, else `~/.pmdaemon`). */
  home?: string;
  /**
   * The bearer token for `host`. Default: `$PMD_TOKEN`, else the content
   * of the file `$PMD_TOKEN_FILE`. The daemon's admin token is in
   * `$PMDAEMON_HOME/token`; `pmd token create NAME --read-only` makes a
   * read-only one.
   */
  token?: string;
  /** A PEM file (path) of the CA that signed the daemon's certificate; default: the system's roots. */
  caCert?: string;
  /** Bound of each unary call in milliseconds; none by default. */
  timeoutMs?: number;
}

/**
 * A client of one daemon.
 *
 * - `connect()` / `connect({ home })`: the local daemon on its Unix socket.
 *   It must be running (`pmd ping` starts one); a missing socket throws
 *   `Unavailable` at once.
 * - `connect({ host, token, caCert })`: a daemon's TCP listener.
 *
 * The connection is made at the first call; a daemon that is not there
 * fails that call with `Unavailable`. `close()` ends the connection.
 */
export function connect(options: ConnectOptions = {}): Client {
  if (options.host === undefined) {
    if (options.token !== undefined || options.caCert !== undefined) {
      throw new TypeError("token and caCert are for a remote daemon: give host too");
    }
    return connectLocal(options);
  }
  return connectRemote(options.host, options);
}

function connectLocal(options: ConnectOptions): Client {
  const home = resolve(options.home ?? defaultHome());
  const socket = join(home, SOCKET_NAME);
  if (!existsSync(socket)) {
    throw new Unavailable(
      Code.Unavailable,
      `no daemon socket at ${socket}: start the daemon (\`pmd ping\` starts one), or set ${HOME_ENV} to its home`,
    );
  }
  // HTTP/2 over the socket: the authority is `localhost`, since a socket
  // path is not a valid one (the daemon's HTTP/2 server refuses it).
  const baseUrl = "http://localhost";
  const sessions = new Http2SessionManager(baseUrl, undefined, {
    createConnection: () => createConnection(socket),
  });
  const transport = createGrpcTransport({ baseUrl, sessionManager: sessions });
  return new Client(transport, {
    address: `unix:${socket}`,
    // What `pmd start` sends; a remote daemon gets neither.
    callerContext: () => ({ cwd: process.cwd(), path: process.env.PATH ?? "" }),
    timeoutMs: options.timeoutMs,
    close: () => sessions.abort(),
  });
}

/** `https://HOST:PORT`, `http://HOST:PORT` or `HOST:PORT` into a base URL; a clear error otherwise. */
export function parseHost(host: string): URL {
  const text = host.trim();
  const usage = "give https://HOST:PORT (TLS), http://HOST:PORT (h2c) or HOST:PORT";
  if (text === "") {
    throw new TypeError(`the host is empty: ${usage}`);
  }
  const withScheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(text) ? text : `https://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new TypeError(`${JSON.stringify(host)} is not an address: ${usage}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TypeError(`${JSON.stringify(host)}: the scheme must be https:// or http://`);
  }
  if (url.hostname === "") {
    throw new TypeError(`${JSON.stringify(host)} has no host: ${usage}`);
  }
  // URL drops a port that is the scheme's default: only an explicit one counts.
  if (url.port === "" && !/:\d+\/?$/.test(text)) {
    throw new TypeError(
      `${JSON.stringify(host)} has no port: give the port the daemon listens on (\`pmdaemond --listen\`), e.g. https://HOST:7070`,
    );
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash || url.username || url.password) {
    throw new TypeError(`${JSON.stringify(host)}: ${usage}, and nothing else`);
  }
  return url;
}

/** The token given, else `$PMD_TOKEN` or the file `$PMD_TOKEN_FILE` (not both). */
function tokenFrom(options: ConnectOptions): string | undefined {
  if (options.token !== undefined) {
    return options.token;
  }
  const inline = process.env.PMD_TOKEN || undefined;
  const file = process.env.PMD_TOKEN_FILE || undefined;
  if (inline !== undefined && file !== undefined) {
    throw new TypeError("both PMD_TOKEN_FILE and PMD_TOKEN are set: unset one of them");
  }
  if (file !== undefined) {
    const token = readFileSync(file, "utf8").trim();
    if (token === "") {
      throw new TypeError(`PMD_TOKEN_FILE: ${file} is empty: put the token in it`);
    }
    return token;
  }
  return inline;
}

function connectRemote(host: string, options: ConnectOptions): Client {
  const url = parseHost(host);
  const tls = url.protocol === "https:";
  if (!tls && options.caCert !== undefined) {
    throw new TypeError("caCert needs TLS: use https://HOST:PORT (or a bare HOST:PORT)");
  }
  const token = tokenFrom(options);
  const baseUrl = `${url.protocol}//${url.host}`;
  const sessions = new Http2SessionManager(
    baseUrl,
    undefined,
    options.caCert === undefined ? {} : { ca: readFileSync(options.caCert) },
  );
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: sessions,
    interceptors: token ? [bearer(token)] : [],
  });
  return new Client(transport, { address: baseUrl, timeoutMs: options.timeoutMs, close: () => sessions.abort() });
}
