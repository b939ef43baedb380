// connect() and connectWeb(): where they go and what the daemon says of
// their tokens. A read-only token is refused on stop and the app runs on;
// a wrong or missing token is Unauthenticated (unary calls and streams);
// TLS verified against a CA file; the local socket found from
// PMDAEMON_HOME; bad addresses refused before anything is sent.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import {
  Code,
  connect,
  InvalidArgument,
  parseHost,
  PermissionDenied,
  PmdaemonError,
  ProcessState,
  Unauthenticated,
  Unavailable,
  type Client,
} from "@pmdaemon/client";
import { connectWeb } from "@pmdaemon/client/web";
import { Daemon, WAIT_MS } from "./harness.js";

/** Runs `call` and returns what it threw (failing if it did not). */
async function refused(call: () => Promise<unknown>): Promise<PmdaemonError> {
  const error = await call().then(
    () => assert.fail("the call succeeded"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof PmdaemonError, `a PmdaemonError: ${error}`);
  return error;
}

function closing(t: TestContext, client: Client): Client {
  t.after(() => client.close());
  return client;
}

/** A gRPC client and a gRPC-Web client of the daemon's TCP listener with `token`. */
function remotes(t: TestContext, daemon: Daemon, token: string | undefined): [string, Client][] {
  return [
    ["grpc", closing(t, connect({ host: daemon.url, token }))],
    ["grpc-web", connectWeb({ baseUrl: daemon.url, token })],
  ];
}

test("a read-only token lists but is refused on stop, and the app runs on", { timeout: 2 * WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t);
  const reader = daemon.pmd("token", "create", "reader", "--read-only").trim();
  const admin = closing(t, connect({ host: daemon.url, token: daemon.adminToken }));
  const started = await admin.start({ script: "/bin/sleep", name: "keep", args: ["1000"] });
  const [ready] = await admin.waitReady(started, { timeoutMs: WAIT_MS });
  const pid = ready!.process!.pid;
  assert.ok(pid !== undefined && pid > 0);

  for (const [transport, client] of remotes(t, daemon, reader)) {
    assert.deepEqual(
      (await client.list()).map((p) => p.name),
      ["keep"],
      transport,
    );
    const error = await refused(() => client.stop("keep"));
    assert.ok(error instanceof PermissionDenied, `${transport}: ${error}`);
    assert.equal(error.code, Code.PermissionDenied);
    assert.match(error.message, /^PERMISSION_DENIED: /);
  }
  const [after] = await daemon.local(t).get("keep");
  assert.equal(after!.state, ProcessState.ONLINE);
  assert.equal(after!.pid, pid);
});

test("a wrong or missing token is Unauthenticated, on calls and streams", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t);
  const saved = { token: process.env.PMD_TOKEN, file: process.env.PMD_TOKEN_FILE };
  delete process.env.PMD_TOKEN;
  delete process.env.PMD_TOKEN_FILE;
  t.after(() => {
    if (saved.token !== undefined) process.env.PMD_TOKEN = saved.token;
    if (saved.file !== undefined) process.env.PMD_TOKEN_FILE = saved.file;
  });
  for (const token of [undefined, `pmd_${"0".repeat(64)}`, "not-a-token"]) {
    for (const [transport, client] of remotes(t, daemon, token)) {
      const what = `${transport} with token ${token}`;
      const error = await refused(() => client.list());
      assert.ok(error instanceof Unauthenticated, `${what}: ${error}`);
      const streamed = await refused(async () => {
        for await (const _ of client.logs("all", { lines: 1 })) {
          // nothing may arrive
        }
      });
      assert.ok(streamed instanceof Unauthenticated, `${what} (logs): ${streamed}`);
    }
  }
});

test("the token from PMD_TOKEN or PMD_TOKEN_FILE", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t);
  const saved = { token: process.env.PMD_TOKEN, file: process.env.PMD_TOKEN_FILE };
  t.after(() => {
    for (const [key, value] of [
      ["PMD_TOKEN", saved.token],
      ["PMD_TOKEN_FILE", saved.file],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });
  delete process.env.PMD_TOKEN_FILE;
  process.env.PMD_TOKEN = daemon.adminToken;
  const fromEnv = closing(t, connect({ host: daemon.url }));
  assert.equal((await fromEnv.ping()).daemonPid, daemon.pid);

  delete process.env.PMD_TOKEN;
  const file = join(daemon.work, "token");
  writeFileSync(file, `${daemon.adminToken}\n`);
  process.env.PMD_TOKEN_FILE = file;
  const fromFile = closing(t, connect({ host: daemon.url }));
  assert.equal((await fromFile.ping()).daemonPid, daemon.pid);

  process.env.PMD_TOKEN = daemon.adminToken;
  assert.throws(() => connect({ host: daemon.url }), /both PMD_TOKEN_FILE and PMD_TOKEN are set/);
});

test("the local socket from PMDAEMON_HOME, and Unavailable without a daemon", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t, { listen: false });
  const saved = process.env.PMDAEMON_HOME;
  process.env.PMDAEMON_HOME = daemon.home;
  t.after(() => {
    if (saved === undefined) delete process.env.PMDAEMON_HOME;
    else process.env.PMDAEMON_HOME = saved;
  });
  const client = closing(t, connect());
  assert.equal(client.address, `unix:${join(daemon.home, "pmd.sock")}`);
  const ping = await client.ping();
  assert.equal(ping.home, daemon.home);
  assert.equal(ping.daemonPid, daemon.pid);

  const empty = mkdtempSync(join(tmpdir(), "pmdaemon-ts-empty-"));
  t.after(() => rmSync(empty, { recursive: true, force: true }));
  assert.throws(
    () => connect({ home: empty }),
    (e: unknown) => e instanceof Unavailable && /pmd\.sock/.test(e.message) && /pmd ping/.test(e.message),
  );
});

test("over TCP a relative script is refused (InvalidArgument) and nothing is created", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t);
  for (const [transport, client] of remotes(t, daemon, daemon.adminToken)) {
    const error = await refused(() => client.start({ script: "./app.sh", name: "rel" }));
    assert.ok(error instanceof InvalidArgument, `${transport}: ${error}`);
    assert.deepEqual(await client.list(), [], transport);
  }
});

test("a nothing-listening port is Unavailable", { timeout: WAIT_MS }, async (t) => {
  // A daemon started and stopped: its port is one nobody listens on now.
  const daemon = await Daemon.start(t);
  const url = daemon.url;
  await daemon.stop();
  const grpc = closing(t, connect({ host: url, token: "x" }));
  const error = await refused(() => grpc.ping({ timeoutMs: WAIT_MS }));
  assert.ok(error instanceof Unavailable, `grpc: ${error}`);
  const web = connectWeb({ baseUrl: url, token: "x" });
  const webError = await refused(() => web.ping({ timeoutMs: WAIT_MS }));
  assert.ok(webError instanceof Unavailable, `grpc-web: ${webError}`);
});

test("bad addresses and options are refused before anything is sent", () => {
  assert.equal(parseHost("127.0.0.1:7070").href, "https://127.0.0.1:7070/");
  assert.equal(parseHost("http://pm.example:80").href, "http://pm.example/");
  for (const [host, message] of [
    ["", /empty/],
    ["127.0.0.1", /no port/],
    ["https://pm.example", /no port/],
    ["ftp://pm.example:21", /https:\/\/ or http:\/\//],
    ["https://pm.example:7070/v1", /nothing else/],
  ] as const) {
    assert.throws(() => parseHost(host), message, host);
  }
  assert.throws(() => connect({ token: "x" }), /give host too/);
  assert.throws(() => connect({ host: "http://127.0.0.1:7070", caCert: "/x.pem" }), /caCert needs TLS/);
  assert.throws(() => connectWeb({ baseUrl: "pm.example:7070" }), /give the daemon's address/);
});

test("TLS: the daemon verified against caCert, the token sent; refused without that CA", { timeout: 2 * WAIT_MS }, async (t) => {
  // The e2e test sdk_typescript makes the CA and the certificate (and
  // checks that nothing was skipped).
  const tls = process.env.PMDAEMON_TEST_TLS_DIR;
  if (!tls) {
    t.skip("PMDAEMON_TEST_TLS_DIR unset: the e2e test sdk_typescript makes a CA and a certificate");
    return;
  }
  const daemon = await Daemon.start(t, {
    args: ["--tls-cert", join(tls, "cert.pem"), "--tls-key", join(tls, "key.pem")],
  });
  const ca = join(tls, "ca.pem");
  const client = closing(t, connect({ host: `127.0.0.1:${daemon.port}`, token: daemon.adminToken, caCert: ca }));
  assert.equal(client.address, `https://127.0.0.1:${daemon.port}`);
  await client.start({ script: "/bin/sleep", name: "secure", args: ["1000"] });
  assert.deepEqual(
    (await client.list()).map((p) => p.name),
    ["secure"],
  );
  await client.stop("secure");

  const wrong = closing(t, connect({ host: `https://localhost:${daemon.port}`, token: `pmd_${"1".repeat(64)}`, caCert: ca }));
  assert.ok((await refused(() => wrong.list())) instanceof Unauthenticated);

  // The system's roots do not know the test CA: the handshake fails.
  const untrusted = closing(t, connect({ host: `https://127.0.0.1:${daemon.port}`, token: daemon.adminToken }));
  const error = await refused(() => untrusted.ping({ timeoutMs: WAIT_MS }));
  assert.ok(error instanceof Unavailable, `${error}`);
});
