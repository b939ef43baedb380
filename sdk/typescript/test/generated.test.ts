// The committed generated code (src/gen) is what buf.gen.yaml makes of
// proto/ today: regenerated into a temporary directory and compared file
// by file.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { test } from "node:test";
import { SDK } from "./harness.js";

/** The files under `root`, relative to it, sorted (a walk of its own: Node 18's readdir has no `recursive` everywhere). */
function tree(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => (entry.isDirectory() ? tree(root, join(dir, entry.name)) : [relative(root, join(dir, entry.name))]))
    .sort();
}

test("the committed src/gen is fresh", { timeout: 60_000 }, (t) => {
  const out = mkdtempSync(join(tmpdir(), "pmdaemon-ts-gen-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  // buf and protoc-gen-es from node_modules, as `npm run generate` runs them.
  const bin = join(SDK, "node_modules", ".bin");
  execFileSync(join(bin, "buf"), ["generate", "--output", out], {
    cwd: SDK,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const fresh = join(out, "src", "gen");
  const committed = join(SDK, "src", "gen");
  const hint = "src/gen is stale: run `npm run generate` in sdk/typescript and commit src/gen";
  assert.deepEqual(tree(fresh), tree(committed), hint);
  const differ = tree(fresh).filter((f) => !readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f))));
  assert.deepEqual(differ, [], `${hint} (these differ)`);
});
