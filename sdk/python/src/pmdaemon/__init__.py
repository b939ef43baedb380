"""Python client of pmdaemon, the Linux process manager.

    import pmdaemon

    with pmdaemon.connect() as pmd:                     # the local daemon
        [app] = pmd.start("/usr/bin/python3", name="web", args=["-m", "http.server", "8000"])
        pmd.wait_ready("web", timeout=10)
        for proc in pmd.list():
            print(proc.name, pmdaemon.state_name(proc.state), proc.pid)

`connect(host="https://HOST:PORT", token=...)` reaches a remote daemon.
`Client.stub` is the generated `ProcessManagerStub` (every RPC), `pmdaemon.pb`
the generated messages; errors are `pmdaemon.PmdaemonError` subclasses.
"""

from ._gen.pmdaemon.v1 import process_manager_pb2 as pb
from ._gen.pmdaemon.v1 import process_manager_pb2_grpc as pb_grpc
from .client import Client, Stream, connect, default_home, state_name
from .errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotReady,
    PermissionDenied,
    PmdaemonError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    from_rpc_error,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "NotReady",
    "PermissionDenied",
    "PmdaemonError",
    "ResourceExhausted",
    "Stream",
    "Unauthenticated",
    "Unavailable",
    "connect",
    "default_home",
    "from_rpc_error",
    "pb",
    "pb_grpc",
    "state_name",
]
