// The client against a real daemon over each transport: the Unix socket,
// gRPC over TCP with a token, and gRPC-Web over TCP with a token (what a
// browser runs, here on Node's fetch). Start, wait ready, list, follow the
// logs as they are written, stop, start again, delete.

import assert from "node:assert/strict";
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { connect, LogStream, NotFound, ProcessState, Readiness, stateName, type Client } from "@pmdaemon/client";
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
