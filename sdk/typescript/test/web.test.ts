// connectWeb() as a page on another origin runs it: the same client code
// on a fetch that enforces what a browser enforces across origins (a
// preflight for the non-safelisted request headers, the response's
// Access-Control-Allow-Origin, only safelisted or exposed response headers
// visible). The daemon lists that origin in `cors_origins`; an origin it
// does not list is refused as a browser would refuse it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { PermissionDenied, Unavailable } from "@pmdaemon/client";
import { connectWeb } from "@pmdaemon/client/web";
import { Daemon, text, watchdog, WAIT_MS } from "./harness.js";

const ORIGIN = "https://console.example";

/** Request headers a page may send without a preflight (Fetch standard, CORS-safelisted), by name. */
const SAFE_REQUEST = new Set(["accept", "accept-language", "content-language"]);
/** Response headers a page always sees. */
const SAFE_RESPONSE = new Set([
  "cache-control",
  "content-language",
  "content-length",
  "content-type",
  "expires",
  "last-modified",
  "pragma",
]);

/** Why the emulated browser refused a cross-origin call (it surfaces as a network error, as in a browser). */
const refusals: string[] = [];

function list(value: string | null): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
}

/** `fetch` as a page of `origin` gets it. */
function browserFetch(origin: string): typeof globalThis.fetch {
  const refuse = (why: string): never => {
    refusals.push(why);
    throw new TypeError(`Failed to fetch (CORS: ${why})`);
  };
  return async (input, init) => {
    const request = new Request(input, init);
    const needsPreflight = [...request.headers.keys()]
      .filter((name) => !SAFE_REQUEST.has(name) && name !== "content-type")
      .concat(isSafeContentType(request.headers.get("content-type")) ? [] : ["content-type"])
      .sort();
    if (needsPreflight.length > 0 || request.method !== "POST") {
      const preflight = await fetch(request.url, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": request.method,
          "access-control-request-headers": needsPreflight.join(","),
        },
        signal: init?.signal ?? null,
      });
      if (preflight.status < 200 || preflight.status > 299) refuse(`preflight answered ${preflight.status}`);
      if (preflight.headers.get("access-control-allow-origin") !== origin) refuse("preflight: origin not allowed");
      const methods = list(preflight.headers.get("access-control-allow-methods"));
      if (!methods.includes(request.method.toLowerCase())) refuse(`preflight: ${request.method} not allowed`);
      const allowed = list(preflight.headers.get("access-control-allow-headers"));
      const missing = needsPreflight.filter((name) => !allowed.includes(name) && !allowed.includes("*"));
      if (missing.length > 0) refuse(`preflight: headers not allowed: ${missing.join(", ")}`);
    }
    const headers = new Headers(request.headers);
    headers.set("origin", origin);
    const response = await fetch(request.url, {
      method: request.method,
      headers,
      body: request.body,
      signal: init?.signal ?? null,
      // A request body stream needs this in Node's fetch.
      duplex: "half",
    } as RequestInit);
    if (response.headers.get("access-control-allow-origin") !== origin) refuse("response: origin not allowed");
    const exposed = list(response.headers.get("access-control-expose-headers"));
    const visible = new Headers();
    for (const [name, value] of response.headers) {
      if (SAFE_RESPONSE.has(name) || exposed.includes(name)) visible.append(name, value);
    }
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers: visible });
  };
}

function isSafeContentType(value: string | null): boolean {
  if (value === null) return true;
  const essence = value.split(";")[0]!.trim().toLowerCase();
  return ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"].includes(essence);
}

test("a page on an allowed origin: list, start, a log stream, a refused stop", { timeout: 2 * WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t, { config: `cors_origins: ['${ORIGIN}']\n` });
  refusals.length = 0;
  const admin = connectWeb({ baseUrl: daemon.url, token: daemon.adminToken, fetch: browserFetch(ORIGIN) });
  assert.deepEqual(await admin.list(), []);
  const started = await admin.start({ script: "/bin/sh", name: "greeter", args: ["-c", "echo hello; echo world; exec sleep 1000"] });
  await admin.waitReady(started, { timeoutMs: WAIT_MS });

  const lines = admin.logs("greeter", { follow: true, lines: 10 });
  const dog = watchdog(lines);
  const seen: string[] = [];
  for await (const line of lines) {
    seen.push(text(line.data));
    if (seen.includes("world")) break;
  }
  dog.clear();
  assert.deepEqual(seen, ["hello", "world"]);

  // An error answered in the headers (trailers-only): its grpc-status must
  // be visible to the page, or it would be a bare network error.
  const reader = daemon.pmd("token", "create", "dashboard", "--read-only").trim();
  const dashboard = connectWeb({ baseUrl: daemon.url, token: reader, fetch: browserFetch(ORIGIN) });
  assert.deepEqual(
    (await dashboard.list()).map((p) => p.name),
    ["greeter"],
  );
  const error = await dashboard.stop("greeter").then(
    () => assert.fail("a read-only token stopped the app"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof PermissionDenied, `${error}`);
  assert.deepEqual(refusals, []);
});

test("a page on an origin not in cors_origins is refused by the browser", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t, { config: `cors_origins: ['${ORIGIN}']\n` });
  refusals.length = 0;
  const client = connectWeb({ baseUrl: daemon.url, token: daemon.adminToken, fetch: browserFetch("https://elsewhere.example") });
  const error = await client.list().then(
    () => assert.fail("another origin's call went through"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof Unavailable, `${error}`);
  // Refused at the preflight (the daemon answers it as any call without a
  // token: 401, without CORS headers), before the token could be sent.
  assert.equal(refusals.length, 1, `${refusals}`);
  assert.match(refusals[0]!, /^preflight/);
});
