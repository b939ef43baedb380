/**
 * The typed client of one daemon, over any connect `Transport`: typed
 * methods for the common verbs, async iterables for the streams (with the
 * counts of what the daemon dropped), `waitReady()`, typed errors, and
 * `raw` (the generated connect client) for every RPC of the contract.
 *
 * Platform-neutral: no Node module is imported here, so the browser entry
 * (`@pmdaemon/client/web`, gRPC-Web over fetch) and the Node entry
 * (`@pmdaemon/client`, gRPC over HTTP/2 or the Unix socket) share it; each
 * entry makes the transport and hands it in.
 *
 * @module
 */

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient, type Client as ConnectClient, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  AppSpecSchema,
  type AppSpec,
  HealthCheckSchema,
  type Event,
  type InstanceReadiness,
  type LogLine,
  LogStream,
  type PingResponse,
  type ProcessInfo,
  ProcessManager,
  ProcessState,
  RestartPolicy,
  type StreamMetricsResponse,
  type WaitReadyResponse,
} from "./gen/pmdaemon/v1/process_manager_pb.js";
import { DeadlineExceeded, NotReady, PmdaemonError, fromError } from "./errors.js";

/** The generated connect client of `pmdaemon.v1.ProcessManager`. */
export type RawClient = ConnectClient<typeof ProcessManager>;

/** `ProcessState.WAITING_RESTART` -> `waiting_restart`, as `pmd` prints it. */
export function stateName(state: ProcessState): string {
  return (ProcessState[state] ?? "UNSPECIFIED").toLowerCase();
}

/** An interceptor that sends `authorization: Bearer TOKEN` on every call. */
export function bearer(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => async (request) => {
    request.header.set("authorization", value);
    return next(request);
  };
}

/** Options every call takes. */
export interface CallOptions {
  /** Bound of this call in milliseconds (the client's `timeoutMs` otherwise). */
  timeoutMs?: number;
  /** Aborting it cancels the call. */
  signal?: AbortSignal;
}

/** A health check in the shape `pmd start --health-check-*` takes. */
export interface HealthCheckOptions {
  /** `http://HOST[:PORT]/PATH`, healthy on 2xx (or `expectedStatus`); `{port}` is the instance's port. */
  http?: string;
  /** `HOST:PORT` that must accept a TCP connection. */
  tcp?: string;
  /** A shell command run with the instance's env and cwd; exit 0 is healthy. */
  script?: string;
  intervalMs?: number;
  timeoutMs?: number;
  retries?: number;
  startPeriodMs?: number;
  expectedStatus?: number;
}

/**
 * A new app: `script` and how to run it. Durations are milliseconds. Any
 * other field of `AppSpec` goes in `spec` (its 64-bit fields are bigints
 * there, e.g. `spec: { logMaxBytes: 1_048_576n }`).
 */
export interface StartOptions extends CallOptions {
  /** A path to a script or executable, or a command name; over TCP, an absolute path or a command on the daemon's PATH. */
  script: string;
  /** The app's name; default: the script's file stem. */
  name?: string;
  args?: string[];
  /** Working directory; over TCP, an absolute path. */
  cwd?: string;
  /** Added to the daemon's environment (a remote caller sends only these). */
  env?: Record<string, string>;
  /** N, 0 for one per CPU, -1 for one less. */
  instances?: number;
  /** `none` runs `script` directly; default: its shebang, else its extension. */
  interpreter?: string;
  autorestart?: "always" | "on-failure" | "never";
  /** `3000`, `3000-3003` or `auto:4000-4100`. */
  port?: string;
  healthCheck?: HealthCheckOptions;
  minUptimeMs?: number;
  killTimeoutMs?: number;
  /** e.g. `SIGINT`. */
  stopSignal?: string;
  /** Any other field of AppSpec. */
  spec?: MessageInitShape<typeof AppSpecSchema>;
  /** How long, in all, the app may wait for its `depends_on` conditions. */
  dependencyTimeoutMs?: number;
}

const AUTORESTART: Record<NonNullable<StartOptions["autorestart"]>, RestartPolicy> = {
  always: RestartPolicy.ALWAYS,
  "on-failure": RestartPolicy.ON_FAILURE,
  never: RestartPolicy.NEVER,
};

const LOG_STREAMS = { stdout: LogStream.STDOUT, stderr: LogStream.STDERR } as const;

/** What the log stream selects and from where it starts. */
export interface LogsOptions {
  /** New lines as they are written, until `cancel()` or a `break`. */
  follow?: boolean;
  /** History lines per log file sent first (default 15; 0: none). */
  lines?: number;
  /** Only stdout or stderr (default both). */
  stream?: "stdout" | "stderr";
  /** Resume: retained lines with a sequence number above this one instead of the history. */
  afterSeq?: bigint;
}

/** What `Client` needs besides its transport (given by each entry). */
export interface ClientOptions {
  /** Where the client goes, for messages: `unix:/path/pmd.sock`, `https://host:7070`. */
  address: string;
  /**
   * A local caller's cwd and PATH, which `StartProcess` resolves relative
   * paths and bare commands against (what `pmd start` sends); a remote
   * caller sends neither.
   */
  callerContext?: () => { cwd: string; path: string };
  /** Bound of each unary call in milliseconds; none by default. */
  timeoutMs?: number;
  /** Releases the connection (the Node entry closes its HTTP/2 session). */
  close?: () => void;
}

/**
 * A server stream as an async iterable of items (log lines, events...).
 *
 * Iterate it once with `for await`; `break`, `cancel()` (from anywhere) or
 * the end of the daemon's stream ends it, and the iteration then stops
 * cleanly. A failure of the stream throws the typed error. `missed` counts
 * what the daemon dropped because this reader fell behind.
 */
export class Stream<T> implements AsyncIterable<T> {
  /** Items the daemon dropped for this reader so far (it fell behind). */
  missed = 0;
  private readonly controller = new AbortController();
  private cancelled = false;
  private started = false;

  /**
   * @param open starts the call with the stream's signal and yields each
   * response as the items it carries and the count the daemon says were
   * missed since the previous one.
   */
  constructor(private readonly open: (signal: AbortSignal) => AsyncIterable<Batch<T>>) {}

  /** Ends the stream; a pending or later `next()` finishes the iteration. */
  cancel(): void {
    this.cancelled = true;
    this.controller.abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.started) {
      throw new TypeError("a Stream is iterated once: open another one (logs(), events()...)");
    }
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<T, void, undefined> {
    try {
      for await (const batch of this.open(this.controller.signal)) {
        this.missed += Number(batch.missed);
        yield* batch.items;
      }
    } catch (error) {
      if (this.cancelled) {
        return;
      }
      throw fromError(error);
    } finally {
      // A `break` or `return` in the reader's loop lands here: the call
      // ends with it instead of streaming on unread.
      this.controller.abort();
    }
  }
}

/** One response of a stream: its items, and what the daemon dropped before it. */
export interface Batch<T> {
  items: readonly T[];
  missed: bigint;
}

async function* batches<R, T>(source: AsyncIterable<R>, unpack: (response: R) => Batch<T>): AsyncIterable<Batch<T>> {
  for await (const response of source) {
    yield unpack(response);
  }
}

/**
 * A client of one daemon. Make one with `connect()` (Node: the local
 * socket or TCP/TLS with a token) or `connectWeb()` (browsers: gRPC-Web).
 * Failed calls throw `PmdaemonError` subclasses.
 */
export class Client {
  /** The generated connect client: every RPC of the contract, messages as they are. */
  readonly raw: RawClient;
  readonly address: string;
  private readonly options: ClientOptions;

  constructor(transport: Transport, options: ClientOptions) {
    this.raw = createClient(ProcessManager, transport);
    this.address = options.address;
    this.options = options;
  }

  toString(): string {
    return `pmdaemon.Client(${this.address})`;
  }

  /** Releases the connection; calls after it fail. */
  close(): void {
    this.options.close?.();
  }

  private callOptions(options: CallOptions = {}) {
    return { timeoutMs: options.timeoutMs ?? this.options.timeoutMs, signal: options.signal };
  }

  private async unary<R>(call: () => Promise<R>): Promise<R> {
    try {
      return await call();
    } catch (error) {
      throw fromError(error);
    }
  }

  /** Which daemon answers: version, pid, home, listen addresses. */
  ping(options?: CallOptions): Promise<PingResponse> {
    return this.unary(() => this.raw.ping({}, this.callOptions(options)));
  }

  /**
   * Creates and starts an app; returns its instances. Locally, a relative
   * `script` or `cwd` resolves against this process's cwd and a bare
   * command on its PATH, as with `pmd start`.
   */
  async start(options: StartOptions): Promise<ProcessInfo[]> {
    if (typeof options?.script !== "string" || options.script === "") {
      throw new TypeError("start() needs `script` (a path or a command); startExisting(target) starts an existing app");
    }
    const spec = create(AppSpecSchema, options.spec);
    spec.script = options.script;
    if (options.name !== undefined) spec.name = options.name;
    if (options.args !== undefined) spec.args = [...options.args];
    if (options.cwd !== undefined) spec.cwd = options.cwd;
    if (options.env !== undefined) {
      for (const [key, value] of Object.entries(options.env)) spec.env[key] = String(value);
    }
    if (options.instances !== undefined) spec.instances = options.instances;
    if (options.interpreter !== undefined) spec.interpreter = options.interpreter;
    if (options.autorestart !== undefined) {
      const policy = AUTORESTART[options.autorestart];
      if (policy === undefined) {
        throw new TypeError(`autorestart ${JSON.stringify(options.autorestart)}: always, on-failure or never`);
      }
      spec.autorestart = policy;
    }
    if (options.port !== undefined) spec.port = options.port;
    if (options.healthCheck !== undefined) spec.healthCheck = healthCheck(options.healthCheck);
    if (options.minUptimeMs !== undefined) spec.minUptimeMs = millis("minUptimeMs", options.minUptimeMs);
    if (options.killTimeoutMs !== undefined) spec.killTimeoutMs = millis("killTimeoutMs", options.killTimeoutMs);
    if (options.stopSignal !== undefined) spec.stopSignal = options.stopSignal;
    return this.startRequest({ spec }, options);
  }

  /** Starts the existing apps of `target` (a name, an id or `all`) that are not running. */
  startExisting(target: string, options?: CallOptions & { dependencyTimeoutMs?: number }): Promise<ProcessInfo[]> {
    return this.startRequest({ target }, options ?? {});
  }

  private async startRequest(
    what: { spec: AppSpec } | { target: string },
    options: CallOptions & { dependencyTimeoutMs?: number },
  ): Promise<ProcessInfo[]> {
    const caller = this.options.callerContext?.();
    const request = {
      ...what,
      callerCwd: caller?.cwd ?? "",
      callerPath: caller?.path ?? "",
      dependencyTimeoutMs:
        options.dependencyTimeoutMs === undefined ? 0n : millis("dependencyTimeoutMs", options.dependencyTimeoutMs),
    };
    const reply = await this.unary(() => this.raw.startProcess(request, this.callOptions(options)));
    return reply.processes;
  }

  /** Every instance of every app. */
  async list(options?: CallOptions): Promise<ProcessInfo[]> {
    return (await this.unary(() => this.raw.listProcesses({}, this.callOptions(options)))).processes;
  }

  /** Everything known about the target's instances (`NotFound` if none). */
  async get(target: string, options?: CallOptions): Promise<ProcessInfo[]> {
    return (await this.unary(() => this.raw.getProcess({ target }, this.callOptions(options)))).processes;
  }

  /** Stops the target's instances (stop signal, then SIGKILL after the kill timeout); the apps stay. */
  async stop(target: string, options?: CallOptions): Promise<ProcessInfo[]> {
    return (await this.unary(() => this.raw.stopProcess({ target }, this.callOptions(options)))).processes;
  }

  /** Stops (if running) and starts again; `port` holds for this run only. */
  async restart(target: string, options?: CallOptions & { port?: string }): Promise<ProcessInfo[]> {
    const request = { target, port: options?.port ?? "" };
    return (await this.unary(() => this.raw.restartProcess(request, this.callOptions(options)))).processes;
  }

  /**
   * Stops and forgets the target's apps (with their log files). With
   * `status` (and target `all`), only the instances in that state.
   */
  async delete(target: string, options?: CallOptions & { status?: ProcessState }): Promise<ProcessInfo[]> {
    const request = { target, status: options?.status ?? ProcessState.UNSPECIFIED };
    return (await this.unary(() => this.raw.deleteProcess(request, this.callOptions(options)))).processes;
  }

  /** Grows or shrinks an app to `instances` (0: one per CPU). */
  async scale(name: string, instances: number, options?: CallOptions): Promise<ProcessInfo[]> {
    return (await this.unary(() => this.raw.scaleProcess({ name, instances }, this.callOptions(options)))).processes;
  }

  /**
   * The last `lines` lines of each log of the target (every app when
   * empty), then with `follow` each new line as it is written. Yields
   * `LogLine`s: `.data` is the line's bytes (not necessarily UTF-8),
   * `.name`, `.id`, `.stream`, `.seq`; `missed` counts the lines the daemon
   * dropped for this reader.
   */
  logs(target = "", options: LogsOptions = {}): Stream<LogLine> {
    const request = {
      target,
      follow: options.follow ?? false,
      lines: options.lines ?? 15,
      stream: options.stream === undefined ? LogStream.UNSPECIFIED : LOG_STREAMS[options.stream],
      afterSeq: options.afterSeq,
    };
    if (options.stream !== undefined && request.stream === undefined) {
      throw new TypeError(`stream ${JSON.stringify(options.stream)}: stdout or stderr`);
    }
    return new Stream((signal) =>
      batches(this.raw.streamLogs(request, { signal }), (r) => ({ items: r.lines, missed: r.missedLines })),
    );
  }

  /**
   * State changes as they happen (started, online, ready, exited,
   * restarting, errored, stopped, deleted...); `missed` counts the events
   * the daemon dropped for this reader.
   */
  events(target = ""): Stream<Event> {
    return new Stream((signal) =>
      batches(this.raw.watchEvents({ target }, { signal }), (r) => ({
        items: r.event === undefined ? [] : [r.event],
        missed: r.missedEvents,
      })),
    );
  }

  /** One CPU and memory sample of the target's processes per interval (at least 200 ms). */
  metrics(target = "", options: { intervalMs?: number } = {}): Stream<StreamMetricsResponse> {
    const request = {
      target,
      intervalMs: options.intervalMs === undefined ? undefined : millis("intervalMs", options.intervalMs),
    };
    return new Stream((signal) =>
      batches(this.raw.streamMetrics(request, { signal }), (r: StreamMetricsResponse) => ({ items: [r], missed: 0n })),
    );
  }

  /**
   * Waits until every instance of `target` is ready (online and healthy,
   * or online for its min_uptime; a one-shot job that exited 0 counts as
   * done) and returns their readiness.
   *
   * `target` may be the list that `start()` or `restart()` returned: then
   * exactly those instances are waited for, and one that crashed or was
   * restarted since fails the wait even if it came back.
   *
   * Throws `NotReady` (with the daemon's report: states, reasons, last
   * health error, last log lines) as soon as an instance cannot become
   * ready, or once `timeoutMs` (default 30 s) has passed.
   */
  async waitReady(
    target: string | ProcessInfo[],
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<InstanceReadiness[]> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const request =
      typeof target === "string"
        ? { target, timeoutMs: millis("timeoutMs", Math.max(1, timeoutMs)) }
        : {
            target: "all",
            timeoutMs: millis("timeoutMs", Math.max(1, timeoutMs)),
            baseline: target.map((p) => ({ id: p.id, restarts: p.restarts })),
          };
    let last: WaitReadyResponse | undefined;
    // The daemon ends the wait at `timeoutMs`; the margin lets its report
    // arrive first. The bound is kept here rather than in connect's
    // `timeoutMs`, whose timer outlives a stream left early (on ready) and
    // would hold a Node process open until it fires.
    const controller = new AbortController();
    const abort = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", abort);
    if (options.signal?.aborted) abort();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs + 10_000);
    try {
      for await (const response of this.raw.waitReady(request, { signal: controller.signal })) {
        last = response;
        if (response.ready) {
          return response.instances;
        }
      }
    } catch (error) {
      const failure = timedOut
        ? new DeadlineExceeded(Code.DeadlineExceeded, `the daemon did not answer within ${timeoutMs + 10_000} ms`)
        : fromError(error);
      if (failure.code === Code.FailedPrecondition || failure.code === Code.DeadlineExceeded) {
        const report = last?.report || failure.rawMessage;
        throw new NotReady(failure.code, failure.rawMessage, report, last?.instances ?? [], error);
      }
      throw failure;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", abort);
      // Ends the call when the wait returns before the daemon's stream does.
      controller.abort();
    }
    throw new NotReady(Code.Unknown, "the daemon ended the wait without saying it was ready", "", last?.instances ?? []);
  }
}

function millis(name: string, value: number): bigint {
  if (!Number.isFinite(value) || value < 0) {
    throw new TypeError(`${name} ${value}: a number of milliseconds, 0 or more`);
  }
  return BigInt(Math.round(value));
}

function healthCheck(options: HealthCheckOptions) {
  const probes = (["http", "tcp", "script"] as const).filter((k) => options[k] !== undefined);
  if (probes.length !== 1) {
    throw new TypeError(`healthCheck needs exactly one of http, tcp and script (got ${probes.join(", ") || "none"})`);
  }
  const kind = probes[0]!;
  return create(HealthCheckSchema, {
    probe: { case: kind, value: options[kind]! },
    intervalMs: options.intervalMs === undefined ? undefined : millis("intervalMs", options.intervalMs),
    timeoutMs: options.timeoutMs === undefined ? undefined : millis("timeoutMs", options.timeoutMs),
    retries: options.retries,
    startPeriodMs: options.startPeriodMs === undefined ? undefined : millis("startPeriodMs", options.startPeriodMs),
    expectedStatus: options.expectedStatus,
  });
}

export { PmdaemonError };
