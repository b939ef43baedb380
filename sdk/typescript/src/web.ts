/**
 * The browser entry of `@pmdaemon/client` (`@pmdaemon/client/web`):
 * {@link connectWeb} reaches a daemon's TCP listener over gRPC-Web
 * (binary framing over fetch, from `@connectrpc/connect-web`), with a
 * bearer token. The same typed client, errors and generated messages as
 * the Node entry; nothing here imports a Node module, so a bundler takes
 * it as it is (and Node 18+ runs it too, on its own fetch).
 *
 * A page on another origin needs that origin in the daemon's
 * `cors_origins` (`$PMDAEMON_HOME/config.yaml`).
 *
 * @module
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { bearer, Client } from "./client.js";

export * from "./client.js";
export * from "./errors.js";
export * from "./gen/pmdaemon/v1/process_manager_pb.js";
export { Code };

/** Where a daemon's gRPC-Web endpoint is, and the token for it. */
export interface WebConnectOptions {
  /** The daemon's TCP listener, e.g. `https://pm.example.com:7070`. */
  baseUrl: string;
  /** A bearer token (a read-only one for a dashboard that only watches). */
  token?: string;
  /** Bound of each unary call in milliseconds; none by default. */
  timeoutMs?: number;
  /** A fetch of your own (default: the global one). */
  fetch?: typeof globalThis.fetch;
}

/**
 * A client of a daemon's TCP listener over gRPC-Web. Server streams (logs,
 * events, metrics) arrive as they are written, over HTTP/1.1 or HTTP/2.
 */
export function connectWeb(options: WebConnectOptions): Client {
  if (typeof options?.baseUrl !== "string" || !/^https?:\/\/[^/]/.test(options.baseUrl)) {
    throw new TypeError(`baseUrl ${JSON.stringify(options?.baseUrl)}: give the daemon's address, e.g. https://HOST:7070`);
  }
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const transport = createGrpcWebTransport({
    baseUrl,
    // The daemon speaks gRPC-Web's protobuf framing, not its JSON variant.
    useBinaryFormat: true,
    interceptors: options.token ? [bearer(options.token)] : [],
    // The global fetch looked up at each call, and called unbound: a
    // browser refuses `fetch` called as a method of another object.
    fetch: unavailableOnNetworkError(baseUrl, options.fetch ?? ((input, init) => globalThis.fetch(input, init))),
  });
  return new Client(transport, { address: baseUrl, timeoutMs: options.timeoutMs });
}

/**
 * `fetch` whose network failures (refused, reset, DNS, TLS: a rejected
 * promise that is not an abort) are `Unavailable`, as they are over
 * HTTP/2; connect would call them `Unknown`.
 */
function unavailableOnNetworkError(baseUrl: string, fetch: typeof globalThis.fetch): typeof globalThis.fetch {
  return async (input, init) => {
    try {
      return await fetch(input, init);
    } catch (error) {
      if (init?.signal?.aborted || (error instanceof Error && error.name === "AbortError")) {
        throw error;
      }
      const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
      const reason = error instanceof Error ? error.message : String(error);
      throw new ConnectError(`cannot reach the daemon at ${baseUrl}: ${reason}${cause}`, Code.Unavailable, undefined, undefined, error);
    }
  };
}
