// The client against a real daemon over each transport: the Unix socket,
// gRPC over TCP with a token, and gRPC-Web over TCP with a token (what a
// browser runs, here on Node's fetch). Start, wait ready, list, follow the
// logs as they are written, stop, start again, delete.

import assert from "node:assert/strict";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import {
  AlreadyExists,
  Code,
  codeName,
  connect,
  EventKind,
  InvalidArgument,
  LogStream,
  NotFound,
  NotReady,
  PmdaemonError,
  ProcessState,
  Readiness,
  stateName,
  type Client,
} from "@pmdaemon/client";
import { connectWeb } from "@pmdaemon/client/web";
import { Daemon, gone, text, waitFor, watchdog, WAIT_MS } from "./harness.js";

// Prints a numbered tick every 100 ms, and the content of $T whenever that
// file appears (then removes it).
const TICKER = 'i=0; while :; do i=$((i+1)); echo "tick $i"; if [ -f "$T" ]; then cat "$T"; rm -f "$T"; fi; sleep 0.1; done';

const TRANSPORTS: Record<string, (daemon: Daemon, t: TestContext) => Client> = {
  unix: (daemon, t) => daemon.local(t),
  grpc: (daemon, t) => {
    const client = connect({ host: daemon.url, token: daemon.adminToken });
    t.after(() => client.close());
    return client;
  },
  "grpc-web": (daemon) => connectWeb({ baseUrl: daemon.url, token: daemon.adminToken }),
};

for (const [transport, makeClient] of Object.entries(TRANSPORTS)) {
  test(`start, wait ready, list, follow logs, stop, delete (${transport})`, { timeout: 4 * WAIT_MS }, async (t) => {
    const daemon = await Daemon.start(t);
    const client = makeClient(daemon, t);
    const trigger = join(daemon.work, "trigger");

    const started = await client.start({
      script: "/bin/sh",
      name: "ticker",
      args: ["-c", TICKER],
      env: { T: trigger },
      minUptimeMs: 300,
    });
    assert.deepEqual(
      started.map((p) => p.name),
      ["ticker"],
    );
    const appId = started[0]!.id;

    const ready = await client.waitReady(started, { timeoutMs: WAIT_MS });
    assert.deepEqual(
      ready.map((r) => r.readiness),
      [Readiness.READY],
    );
    assert.equal(ready[0]!.process?.ready, true);

    const listed = (await client.list()).filter((p) => p.name === "ticker");
    assert.equal(listed.length, 1);
    assert.equal(stateName(listed[0]!.state), "online");
    const pid = listed[0]!.pid;
    assert.ok(pid !== undefined && pid > 0, `a pid: ${pid}`);
    assert.deepEqual(
      (await client.get("ticker")).map((p) => p.id),
      [appId],
    );
    assert.deepEqual(
      (await client.get(String(appId))).map((p) => p.name),
      ["ticker"],
    );

    // Follow from now on: a tick proves the stream live, then a line the
    // app writes only after that must arrive too.
    const marker = `written after the stream began ${process.pid} ${transport}`;
    const lines = client.logs("ticker", { follow: true, lines: 0 });
    const dog = watchdog(lines);
    const reader = lines[Symbol.asyncIterator]();
    const first = await reader.next();
    assert.ok(!first.done, "the stream ended before its first line");
    assert.equal(first.value.name, "ticker");
    assert.match(text(first.value.data), /^tick \d+$/);
    assert.equal(first.value.stream, LogStream.STDOUT);
    assert.ok(first.value.seq > 0n, "a live line has a sequence number");
    writeFileSync(`${trigger}.tmp`, `${marker}\n`);
    renameSync(`${trigger}.tmp`, trigger);
    const seen: string[] = [];
    for (;;) {
      const next = await reader.next();
      assert.ok(!next.done, `${JSON.stringify(marker)} never arrived; got ${JSON.stringify(seen.slice(-5))}`);
      seen.push(text(next.value.data));
      if (seen.at(-1) === marker) break;
    }
    await reader.return?.();
    dog.clear();
    assert.equal(lines.missed, 0);

    // History without follow: the stream ends on its own.
    const history = [];
    for await (const line of client.logs("ticker", { lines: 5 })) history.push(line);
    assert.ok(history.length >= 1 && history.length <= 10, `${history.length} history lines`);
    assert.ok(history.every((line) => line.name === "ticker"));
    assert.ok(history.some((line) => text(line.data) === marker), "the marker is in the history");

    const stopped = await client.stop("ticker");
    assert.deepEqual(
      stopped.map((p) => stateName(p.state)),
      ["stopped"],
    );
    const [after] = await client.get("ticker");
    assert.equal(after!.state, ProcessState.STOPPED);
    assert.equal(after!.pid, undefined);
    await waitFor(`pid ${pid} to be gone`, () => gone(pid!));

    const again = await client.startExisting("ticker");
    assert.equal(again[0]?.id, appId);
    await client.waitReady("ticker", { timeoutMs: WAIT_MS });

    const deleted = await client.delete("ticker");
    assert.deepEqual(
      deleted.map((p) => p.id),
      [appId],
    );
    const error = await client.get("ticker").then(
      () => assert.fail("get of a deleted app succeeded"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof NotFound, `${error}`);
    assert.match(error.rawMessage, /ticker/);
    assert.ok((await client.list()).every((p) => p.name !== "ticker"));
  });
}

test("typed errors: AlreadyExists, InvalidArgument, NotFound", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t, { listen: false });
  const client = daemon.local(t);
  await client.start({ script: "/bin/sleep", name: "nap", args: ["1000"] });
  const cases = [
    [AlreadyExists, () => client.start({ script: "/bin/sleep", name: "nap", args: ["1000"] })],
    [InvalidArgument, () => client.start({ script: "/bin/sleep", name: "all", args: ["1000"] })],
    [NotFound, () => client.stop("nope")],
  ] as const;
  for (const [Class, call] of cases) {
    const error = await call().then(
      () => assert.fail(`${Class.name} expected, the call succeeded`),
      (e: unknown) => e,
    );
    assert.ok(error instanceof Class, `${Class.name} expected: ${error}`);
    assert.ok(error instanceof PmdaemonError);
    assert.equal(error.name, Class.name);
    assert.match(error.message, new RegExp(`^${codeName(error.code)}: `));
  }
  assert.deepEqual(
    (await client.list()).map((p) => p.name),
    ["nap"],
  );
});

test("waitReady throws NotReady with the daemon's report when the app fails", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t, { listen: false });
  const client = daemon.local(t);
  const started = await client.start({
    script: "/bin/sh",
    name: "broken",
    args: ["-c", "echo 'cannot bind port' >&2; exit 3"],
    autorestart: "never",
  });
  const error = await client.waitReady(started, { timeoutMs: WAIT_MS }).then(
    () => assert.fail("waitReady of a failing app succeeded"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof NotReady, `${error}`);
  assert.equal(error.code, Code.FailedPrecondition);
  assert.match(error.report, /broken/);
  assert.match(error.report, /cannot bind port/);
  assert.equal(error.instances[0]?.readiness, Readiness.FAILED);
});

test("waitReady throws NotReady (DeadlineExceeded) once its timeout passed", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t, { listen: false });
  const client = daemon.local(t);
  // min_uptime far above the timeout: online, never ready in time.
  await client.start({ script: "/bin/sleep", name: "slow", args: ["1000"], minUptimeMs: 60_000 });
  const error = await client.waitReady("slow", { timeoutMs: 500 }).then(
    () => assert.fail("waitReady of a slow app succeeded"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof NotReady, `${error}`);
  assert.equal(error.code, Code.DeadlineExceeded);
  assert.match(error.report, /slow/);
});

test("events as they happen, and raw for every other RPC", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t, { listen: false });
  const client = daemon.local(t);
  const events = client.events();
  const dog = watchdog(events);
  const reader = events[Symbol.asyncIterator]();
  // An event of another app first proves the stream live, so none of the
  // app's own events can come before it.
  await client.start({ script: "/bin/sleep", name: "sync", args: ["1000"] });
  for (;;) {
    const next = await reader.next();
    assert.ok(!next.done, "the event stream ended before the event of `sync`");
    if (next.value.name === "sync") break;
  }
  await client.start({ script: "/bin/sleep", name: "evented", args: ["1000"], minUptimeMs: 200 });
  const kinds: EventKind[] = [];
  for (;;) {
    const next = await reader.next();
    assert.ok(!next.done, `the event stream ended; got ${kinds.map((k) => EventKind[k])}`);
    if (next.value.name !== "evented") continue;
    kinds.push(next.value.kind);
    if (next.value.kind === EventKind.READY) break;
  }
  events.cancel();
  dog.clear();
  assert.equal((await reader.next()).done, true, "a cancelled stream ends");
  assert.equal(kinds[0], EventKind.STARTED, `${kinds.map((k) => EventKind[k])}`);
  assert.ok(kinds.includes(EventKind.ONLINE), `${kinds.map((k) => EventKind[k])}`);
  assert.equal(events.missed, 0);

  const reply = await client.raw.scaleProcess({ name: "evented", instances: 2 });
  assert.equal(reply.processes.length, 2);
  assert.equal((await client.scale("evented", 1)).length, 1);
});

test("metrics: a sample per interval of the target's processes", { timeout: WAIT_MS }, async (t) => {
  const daemon = await Daemon.start(t, { listen: false });
  const client = daemon.local(t);
  const [app] = await client.start({ script: "/bin/sleep", name: "measured", args: ["1000"] });
  await client.waitReady("measured", { timeoutMs: WAIT_MS });
  const samples = client.metrics("measured", { intervalMs: 200 });
  const dog = watchdog(samples);
  let count = 0;
  for await (const sample of samples) {
    const mine = sample.processes.find((p) => p.id === app!.id);
    assert.ok(mine, `the sample has the app: ${JSON.stringify(sample.processes.map((p) => p.id))}`);
    if (++count === 2) break;
  }
  dog.clear();
  assert.equal(count, 2);
});

// The daemon does not wait for a follower that stops reading: it drops
// lines for it and says how many in the next message; `missed` adds them
// up, and every line after the first one received is either received or
// counted missed (their sequence numbers say how many there were).
for (const [transport, makeClient] of Object.entries(TRANSPORTS)) {
  test(`a slow follower is told how many lines it missed (${transport})`, { timeout: 4 * WAIT_MS }, async (t) => {
    const daemon = await Daemon.start(t);
    const client = makeClient(daemon, t);
    const go = join(daemon.work, "go");
    const COUNT = 200_000;
    const [flood] = await client.start({
      script: "/bin/sh",
      name: "flood",
      args: [
        "-c",
        `while [ ! -e "$GO" ]; do echo waiting; sleep 0.05; done; seq -f 'flood %06g ${".".repeat(80)}' 1 ${COUNT}; echo done; exec sleep 100000`,
      ],
      env: { GO: go },
      spec: { logMaxBytes: 100n * 1024n * 1024n },
    });
    const lines = client.logs("flood", { follow: true, lines: 0, stream: "stdout" });
    const dog = watchdog(lines, 4 * WAIT_MS);
    const reader = lines[Symbol.asyncIterator]();
    // A line received proves the stream live: the flood starts after it.
    const first = await reader.next();
    assert.ok(!first.done, "the stream ended before its first line");
    assert.equal(text(first.value.data), "waiting");
    writeFileSync(go, "");
    // Do not read again until the app has written everything.
    const log = flood!.outLogPath;
    await waitFor(
      "the app to write every line",
      () => existsSync(log) && readFileSync(log).subarray(-5).toString() === "done\n",
      4 * WAIT_MS,
    );
    let received = 0;
    let last = first.value;
    while (text(last.data) !== "done") {
      const next = await reader.next();
      assert.ok(!next.done, `no "done" line after ${received} lines and ${lines.missed} missed`);
      received++;
      last = next.value;
    }
    await reader.return?.();
    dog.clear();
    const after = Number(last.seq - first.value.seq);
    assert.ok(after > COUNT, `${after} lines after the first one`);
    assert.ok(lines.missed > 0, `a reader that stopped for ${after} lines missed none (received ${received})`);
    assert.equal(received + lines.missed, after, `received ${received} + missed ${lines.missed}`);
  });
}
