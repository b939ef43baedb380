/**
 * Typed errors: each gRPC status the daemon answers becomes a subclass of
 * {@link PmdaemonError}, with the status code (`.code`, connect's `Code`)
 * and the daemon's own words (`.rawMessage`). Platform-neutral: the Node
 * and the browser entries share it.
 *
 * @module
 */

import { Code, ConnectError } from "@connectrpc/connect";
import type { InstanceReadiness } from "./gen/pmdaemon/v1/process_manager_pb.js";

/** `Code.NotFound` -> `NOT_FOUND`, as gRPC (and `pmd`) name codes. */
export function codeName(code: Code): string {
  const name = Code[code] ?? "Unknown";
  return name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** A call that the daemon (or the connection to it) failed. */
export class PmdaemonError extends Error {
  /** The gRPC status code. */
  readonly code: Code;
  /** The daemon's message, without the code in front. */
  readonly rawMessage: string;
  /** Response headers and trailers of the failed call. */
  readonly metadata: Headers;

  constructor(code: Code, rawMessage: string, options: { metadata?: Headers; cause?: unknown } = {}) {
    super(`${codeName(code)}: ${rawMessage}`);
    // The subclass's name, so that a printed error says which one it is.
    this.name = new.target.name;
    this.code = code;
    this.rawMessage = rawMessage;
    this.metadata = options.metadata ?? new Headers();
    if (options.cause !== undefined) {
      Object.defineProperty(this, "cause", { value: options.cause, enumerable: false, writable: true });
    }
  }
}

/** No app or process matches the target. */
export class NotFound extends PmdaemonError {}

/** An app of that name exists already. */
export class AlreadyExists extends PmdaemonError {}

/** A value the daemon refuses (a name, a relative path over TCP...). */
export class InvalidArgument extends PmdaemonError {}

/** The call cannot be done in the current state. */
export class FailedPrecondition extends PmdaemonError {}

/** The token may not make this call (e.g. a read-only token on stop). */
export class PermissionDenied extends PmdaemonError {}

/** No token, or one the daemon does not know (wrong, revoked, expired). */
export class Unauthenticated extends PmdaemonError {}

/** No daemon answers there (no socket, connection refused, TLS failure). */
export class Unavailable extends PmdaemonError {}

/** The call did not finish within its deadline. */
export class DeadlineExceeded extends PmdaemonError {}

/** A limit was reached (a full disk, a message too large...). */
export class ResourceExhausted extends PmdaemonError {}

/** The call was cancelled by the caller (an aborted signal). */
export class Cancelled extends PmdaemonError {}

/**
 * `Client.waitReady` ended without every instance ready.
 *
 * `.code` is `FailedPrecondition` when an instance cannot become ready
 * (errored, stopped, crashed...) and `DeadlineExceeded` when the timeout
 * passed; `.report` is the daemon's whole report (each instance not ready,
 * its state, reason, last health error and last log lines), `.instances`
 * the last progress it sent.
 */
export class NotReady extends PmdaemonError {
  readonly report: string;
  readonly instances: InstanceReadiness[];

  constructor(code: Code, rawMessage: string, report: string, instances: InstanceReadiness[], cause?: unknown) {
    super(code, rawMessage, { cause });
    this.report = report || rawMessage;
    this.instances = instances;
  }
}

const BY_CODE: Partial<Record<Code, new (code: Code, message: string, options?: { metadata?: Headers; cause?: unknown }) => PmdaemonError>> = {
  [Code.NotFound]: NotFound,
  [Code.AlreadyExists]: AlreadyExists,
  [Code.InvalidArgument]: InvalidArgument,
  [Code.FailedPrecondition]: FailedPrecondition,
  [Code.PermissionDenied]: PermissionDenied,
  [Code.Unauthenticated]: Unauthenticated,
  [Code.Unavailable]: Unavailable,
  [Code.DeadlineExceeded]: DeadlineExceeded,
  [Code.ResourceExhausted]: ResourceExhausted,
  [Code.Canceled]: Cancelled,
};

/**
 * The typed error for anything a call threw: a `ConnectError` (or any
 * error, as connect converts it) becomes the subclass of its code; a
 * `PmdaemonError` is returned as it is.
 */
export function fromError(error: unknown): PmdaemonError {
  if (error instanceof PmdaemonError) {
    return error;
  }
  const connect = ConnectError.from(error);
  if (tlsFailure(error)) {
    // connect-node reports a refused certificate as `Internal`; to the
    // caller it is a daemon that cannot be reached safely, as with grpc.
    const message = `the TLS handshake with the daemon failed: ${connect.rawMessage} (give caCert, the CA that signed the daemon's certificate, and a host name in it)`;
    return new Unavailable(Code.Unavailable, message, { metadata: connect.metadata, cause: error });
  }
  const Class = BY_CODE[connect.code] ?? PmdaemonError;
  return new Class(connect.code, connect.rawMessage, { metadata: connect.metadata, cause: error });
}

/** OpenSSL's verification failures as Node names them (`error.code`). */
const TLS_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
]);

/** Whether `error` or one of its causes is a failed TLS handshake (Node's error codes). */
function tlsFailure(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (TLS_CODES.has(code) || /^ERR_(TLS|SSL)_/.test(code))) {
      return true;
    }
  }
  return false;
}
