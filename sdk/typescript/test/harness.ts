/**
 * A real `pmdaemond` for each test, on its own temporary PMDAEMON_HOME,
 * with its TCP listener on a port the kernel picks (`--listen
 * 127.0.0.1:0`; the daemon's Ping says which).
 *
 * The binaries come from `PMDAEMON_TEST_PMDAEMOND` / `PMDAEMON_TEST_PMD`
 * (the e2e test `sdk_typescript` sets them), else the newest of this
 * repository's `target/*\/debug/`, refused when a source file in its
 * dep-info changed after it was built (as the Rust harness does). Each
 * daemon is stopped by its pid when its test ends, failed or not (SIGTERM,
 * then SIGKILL), and then every process that
 * carries its home in its environment (its apps) is SIGKILLed, as the Rust
 * harness does; a test process that exits early kills what is left.
 * `PMDAEMON_TEST_TIMEOUT_SCALE` multiplies every deadline.
 *
 * @module
 */

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";
import { connect, PmdaemonError, type Client } from "@pmdaemon/client";

/** sdk/typescript, from dist-test/harness.js. */
export const SDK = join(dirname(fileURLToPath(import.meta.url)), "..");
const REPO = join(SDK, "..", "..");
export const SCALE = Number(process.env.PMDAEMON_TEST_TIMEOUT_SCALE || 1);
/** Every deadline of these tests. */
export const WAIT_MS = 30_000 * SCALE;

function binary(env: string, name: string): string {
  const given = process.env[env];
  if (given) {
    // The e2e test sdk_typescript sets it, after its own staleness check.
    if (!existsSync(given)) throw new Error(`${env}=${given}: no such file`);
    return given;
  }
  const target = join(REPO, "target");
  const candidates = existsSync(target)
    ? readdirSync(target)
        .map((d) => join(target, d, "debug", name))
        .filter((p) => existsSync(p))
    : [];
  if (candidates.length === 0) {
    throw new Error(`no ${name} under ${target}/*/debug: run \`cargo build --workspace\` first (or set ${env})`);
  }
  // The newest build, and only if no source of it changed since.
  const bin = candidates.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
  const newer = newerSource(bin);
  if (newer !== undefined) {
    throw new Error(`${bin} is older than ${newer}: rebuild first: cargo build --workspace`);
  }
  return bin;
}

/** A source file of `bin` modified after it was linked, from the dep-info cargo writes next to it (`pmd.d`). */
function newerSource(bin: string): string | undefined {
  let depInfo: string;
  try {
    depInfo = readFileSync(`${bin}.d`, "utf8");
  } catch {
    return undefined;
  }
  const built = statSync(bin).mtimeMs;
  // `target: dep dep ...`, spaces inside paths escaped as `\ `.
  const deps = (depInfo.split("\n")[0] ?? "").split(": ").slice(1).join(": ").replaceAll("\\ ", "\0");
  return deps
    .split(/\s+/)
    .filter((d) => d !== "")
    .map((d) => d.replaceAll("\0", " "))
    .find((dep) => {
      try {
        return statSync(dep).mtimeMs > built;
      } catch {
        return false;
      }
    });
}

export const PMDAEMOND = binary("PMDAEMON_TEST_PMDAEMOND", "pmdaemond");
export const PMD = binary("PMDAEMON_TEST_PMD", "pmd");

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `predicate` every 50 ms until it returns a truthy value, failing after `timeoutMs`. */
export async function waitFor<T>(what: string, predicate: () => T | Promise<T>, timeoutMs = WAIT_MS): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)}s waiting for ${what}`);
    await sleep(50);
  }
}

/** Daemons not stopped yet: killed if the test process exits before their test's hook runs. */
const running = new Set<Daemon>();
process.on("exit", () => {
  for (const daemon of running) daemon.kill();
});

export interface DaemonOptions {
  /** Extra `pmdaemond` flags. */
  args?: string[];
  /** Content of `$PMDAEMON_HOME/config.yaml`, written before the daemon starts. */
  config?: string;
  /** Listen on TCP (default true). */
  listen?: boolean;
}

export class Daemon {
  readonly root: string;
  readonly home: string;
  /** Where apps run and test files are written. */
  readonly work: string;
  /** The TCP listener's port (0 without one). */
  port = 0;
  private readonly child: ChildProcess;
  private readonly stderrPath: string;
  private exited = false;

  private constructor(options: DaemonOptions) {
    this.root = mkdtempSync(join(tmpdir(), "pmdaemon-ts-"));
    this.home = join(this.root, "home");
    this.work = join(this.root, "work");
    mkdirSync(this.home, { mode: 0o700 });
    mkdirSync(this.work);
    if (options.config !== undefined) writeFileSync(join(this.home, "config.yaml"), options.config);
    this.stderrPath = join(this.root, "pmdaemond.stderr");
    const args = [...(options.listen === false ? [] : ["--listen", "127.0.0.1:0"]), ...(options.args ?? [])];
    const out = openSync(this.stderrPath, "w");
    try {
      this.child = spawn(PMDAEMOND, args, {
        cwd: this.work,
        env: { ...cleanEnv(), PMDAEMON_HOME: this.home, NO_COLOR: "1" },
        stdio: ["ignore", out, out],
      });
    } finally {
      closeSync(out);
    }
    this.child.on("exit", () => {
      this.exited = true;
    });
    running.add(this);
  }

  /** A running daemon, stopped when the test `t` ends (passed or not). */
  static async start(t: TestContext, options: DaemonOptions = {}): Promise<Daemon> {
    const daemon = new Daemon(options);
    t.after(() => daemon.stop());
    try {
      await daemon.answers(options.listen !== false);
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return daemon;
  }

  private async answers(listen: boolean): Promise<void> {
    const socket = join(this.home, "pmd.sock");
    await waitFor("the daemon to answer Ping on its socket", async () => {
      if (this.exited) throw new Error(`pmdaemond exited early:\n${this.stderr()}`);
      if (!existsSync(socket)) return false;
      const client = connect({ home: this.home });
      try {
        const ping = await client.ping({ timeoutMs: 5_000 });
        if (listen) {
          const address = ping.listen[0];
          if (address === undefined) throw new Error(`the daemon listens on no TCP port:\n${this.stderr()}`);
          this.port = Number(address.slice(address.lastIndexOf(":") + 1));
        }
        return true;
      } catch (error) {
        if (error instanceof PmdaemonError) return false;
        throw error;
      } finally {
        client.close();
      }
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get adminToken(): string {
    return readFileSync(join(this.home, "token"), "utf8").trim();
  }

  /** `http://127.0.0.1:PORT`: the TCP listener without TLS. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A local client (the Unix socket), closed when `t` ends. */
  local(t: TestContext): Client {
    const client = connect({ home: this.home });
    t.after(() => client.close());
    return client;
  }

  stderr(): string {
    return readFileSync(this.stderrPath, "utf8");
  }

  /** Runs the real `pmd` on this home; its stdout. */
  pmd(...args: string[]): string {
    return execFileSync(PMD, args, {
      cwd: this.work,
      env: { ...cleanEnv(), PMDAEMON_HOME: this.home, NO_COLOR: "1" },
      encoding: "utf8",
      timeout: WAIT_MS,
    });
  }

  async stop(): Promise<void> {
    if (!running.has(this)) return;
    if (!this.exited) {
      this.child.kill("SIGTERM");
      const deadline = Date.now() + WAIT_MS;
      while (!this.exited && Date.now() < deadline) await sleep(20);
    }
    this.kill();
    rmSync(this.root, { recursive: true, force: true });
  }

  /** SIGKILL to the daemon if it runs, then to every process of its home. */
  kill(): void {
    running.delete(this);
    if (!this.exited) {
      try {
        process.kill(this.child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }
    const marker = `PMDAEMON_HOME=${this.home}`;
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
      try {
        const environ = readFileSync(`/proc/${entry}/environ`, "latin1").split("\0");
        if (environ.includes(marker)) process.kill(Number(entry), "SIGKILL");
      } catch {
        // gone, or not ours to read
      }
    }
  }
}

/** This process's environment without the `PMD_*` variables a developer may have set. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PMD_") && k !== "PMDAEMON_HOME"));
}

/** Whether `pid` is gone (or a zombie its parent has not reaped yet). */
export function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

/** Cancels `stream` after `ms` so that a missing item fails the test instead of hanging it. */
export function watchdog(stream: { cancel(): void }, ms = WAIT_MS): { clear(): void } {
  const timer = setTimeout(() => stream.cancel(), ms);
  return { clear: () => clearTimeout(timer) };
}

export const text = (data: Uint8Array) => new TextDecoder().decode(data);
