"""Typed errors: each gRPC status the daemon answers becomes a subclass of
`PmdaemonError`, with the status code (`.code`, a `grpc.StatusCode`) and
the daemon's message (`.message`)."""

from typing import Dict, Optional, Type

import grpc


class PmdaemonError(Exception):
    """A call the daemon (or the connection to it) failed."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class NotFound(PmdaemonError):
    """No app or process matches the target."""


class AlreadyExists(PmdaemonError):
    """An app of that name exists already."""


class InvalidArgument(PmdaemonError):
    """A value the daemon refuses (a name, a relative path over TCP...)."""


class FailedPrecondition(PmdaemonError):
    """The call cannot be done in the current state."""


class PermissionDenied(PmdaemonError):
    """The token may not make this call (e.g. a read-only token on stop)."""


class Unauthenticated(PmdaemonError):
    """No token, or one the daemon does not know (wrong, revoked, expired)."""


class Unavailable(PmdaemonError):
    """No daemon answers there."""


class DeadlineExceeded(PmdaemonError):
    """The call did not finish within its deadline."""


class ResourceExhausted(PmdaemonError):
    """A limit was reached (a full disk, a message too large...)."""


class NotReady(PmdaemonError):
    """`Client.wait_ready` ended without every instance ready.

    `.code` is FAILED_PRECONDITION when an instance cannot become ready
    (errored, stopped, crashed...) and DEADLINE_EXCEEDED when the timeout
    passed; `.report` is the daemon's whole report (each instance not ready,
    its state, reason, last health error and last log lines), `.instances`
    the last progress it sent (`InstanceReadiness` messages)."""

    def __init__(self, code: grpc.StatusCode, message: str, report: str = "", instances=()):
        super().__init__(code, message)
        self.report = report or message
        self.instances = list(instances)


_BY_CODE: Dict[grpc.StatusCode, Type[PmdaemonError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def from_rpc_error(error: grpc.RpcError) -> PmdaemonError:
    """The typed error for a failed gRPC call."""
    code: Optional[grpc.StatusCode] = error.code() if hasattr(error, "code") else None
    message = error.details() if hasattr(error, "details") else None
    code = code or grpc.StatusCode.UNKNOWN
    return _BY_CODE.get(code, PmdaemonError)(code, message or str(error))
