"""The connection (`connect`) and the typed client (`Client`).

Locally, `connect()` reaches the daemon of `$PMDAEMON_HOME` (default
`~/.pmdaemon`) on its Unix socket, as `pmd` does: no token, the daemon
checks the caller's uid. Remotely, `connect(host=...)` reaches a daemon
started with `pmdaemond --listen` over TLS or h2c with a bearer token.
"""

import collections
import os
from typing import Callable, Deque, Generic, Iterable, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

import grpc

from ._gen.pmdaemon.v1 import process_manager_pb2 as pb
from ._gen.pmdaemon.v1 import process_manager_pb2_grpc as pb_grpc
from .errors import NotReady, PmdaemonError, Unavailable, from_rpc_error

HOME_ENV = "PMDAEMON_HOME"
SOCKET_NAME = "pmd.sock"

T = TypeVar("T")

_AUTORESTART = {
    "always": pb.RESTART_POLICY_ALWAYS,
    "on-failure": pb.RESTART_POLICY_ON_FAILURE,
    "on_failure": pb.RESTART_POLICY_ON_FAILURE,
    "never": pb.RESTART_POLICY_NEVER,
}
_LOG_STREAMS = {
    None: pb.LOG_STREAM_UNSPECIFIED,
    "stdout": pb.LOG_STREAM_STDOUT,
    "stderr": pb.LOG_STREAM_STDERR,
}


def default_home() -> str:
    """`$PMDAEMON_HOME`, else `~/.pmdaemon`, as `pmd` finds it."""
    home = os.environ.get(HOME_ENV)
    return home if home else os.path.join(os.path.expanduser("~"), ".pmdaemon")


def state_name(state: int) -> str:
    """`PROCESS_STATE_WAITING_RESTART` -> `waiting_restart`, as pmd prints it."""
    return pb.ProcessState.Name(state)[len("PROCESS_STATE_"):].lower()


def connect(
    host: Optional[str] = None,
    *,
    home: Optional[str] = None,
    token: Optional[str] = None,
    ca_cert: Optional[str] = None,
    tls: Optional[bool] = None,
    options: Sequence = (),
) -> "Client":
    """A client of one daemon.

    - `connect()` / `connect(home=DIR)`: the local daemon, on the Unix socket
      `DIR/pmd.sock` (DIR: `home`, else `$PMDAEMON_HOME`, else
      `~/.pmdaemon`). It must be running (`pmd ping` starts one).
    - `connect(host="HOST:PORT", token=...)`: a daemon's TCP listener.
      `https://HOST:PORT` or a bare `HOST:PORT` is TLS (as `pmd --host`),
      verified against `ca_cert` (a PEM file) or the system's roots;
      `http://HOST:PORT` or `tls=False` is h2c, the token in clear text.
      `token` defaults to `$PMD_TOKEN`, else the content of
      `$PMD_TOKEN_FILE`.

    The channel connects lazily: a daemon that is not there raises
    `Unavailable` on the first call.
    """
    opts = list(options)
    if host is None:
        if token is not None or ca_cert is not None or tls:
            raise ValueError("token, ca_cert and tls are for a remote daemon: give host= too")
        home = os.path.abspath(home or default_home())
        socket = os.path.join(home, SOCKET_NAME)
        if not os.path.exists(socket):
            raise Unavailable(
                grpc.StatusCode.UNAVAILABLE,
                f"no daemon socket at {socket}: start the daemon (`pmd ping` starts one), "
                f"or set {HOME_ENV} to its home",
            )
        # C-core takes the socket path as the HTTP/2 authority, which is not
        # a valid one: the daemon (hyper) would refuse every call.
        channel = grpc.insecure_channel(f"unix:{socket}", options=[("grpc.default_authority", "localhost")] + opts)
        return Client(channel, local=True, address=f"unix:{socket}")

    address = host
    scheme_tls = True
    if host.startswith("https://"):
        address = host[len("https://"):]
    elif host.startswith("http://"):
        address, scheme_tls = host[len("http://"):], False
    address = address.rstrip("/")
    if "/" in address or ":" not in address:
        raise ValueError(f"{host!r}: give HOST:PORT, https://HOST:PORT or http://HOST:PORT")
    if tls is None:
        tls = scheme_tls or ca_cert is not None
    if token is None:
        token = os.environ.get("PMD_TOKEN") or None
    if token is None and os.environ.get("PMD_TOKEN_FILE"):
        with open(os.environ["PMD_TOKEN_FILE"], encoding="utf-8") as f:
            token = f.read().strip() or None

    if tls:
        root = None
        if ca_cert is not None:
            with open(ca_cert, "rb") as f:
                root = f.read()
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
        if token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token)
            )
        channel = grpc.secure_channel(address, credentials, options=opts)
    else:
        if ca_cert is not None:
            raise ValueError("ca_cert needs TLS: drop tls=False or the http:// scheme")
        channel = grpc.insecure_channel(address, options=opts)
        if token:
            # grpc refuses call credentials on an insecure channel: the
            # token goes as metadata on every call instead.
            channel = _AuthChannel(channel, token)
    return Client(channel, local=False, address=("https://" if tls else "http://") + address)


class _Details(
    collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _add(self, details):
        metadata = list(details.metadata or []) + [self._header]
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._add(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._add(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._add(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._add(details), requests)


def _AuthChannel(channel: grpc.Channel, token: str) -> grpc.Channel:
    intercepted = grpc.intercept_channel(channel, _BearerInterceptor(token))
    # close() of the intercepted channel closes the underlying one.
    return intercepted


class Stream(Generic[T]):
    """A server stream as an iterator of items (log lines, events...).

    Iterate it; `cancel()` (from another thread, a timer...) or leaving its
    `with` block ends it, and the iteration then stops cleanly. A failure of
    the stream raises the typed error. `missed` counts what the daemon
    dropped because this reader fell behind."""

    def __init__(self, call, unpack: Callable[["Stream[T]", object], Iterable[T]]):
        self._call = call
        self._unpack = unpack
        self._pending: Deque[T] = collections.deque()
        self._cancelled = False
        self.missed = 0

    def __iter__(self) -> "Stream[T]":
        return self

    def __next__(self) -> T:
        while not self._pending:
            try:
                response = next(self._call)
            except StopIteration:
                raise
            except grpc.RpcError as error:
                if self._cancelled and error.code() == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                raise from_rpc_error(error) from None
            self._pending.extend(self._unpack(self, response))
        return self._pending.popleft()

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> "Stream[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()


def _log_lines(stream: Stream, response) -> List[pb.LogLine]:
    stream.missed += response.missed_lines
    return list(response.lines)


def _events(stream: Stream, response) -> List[pb.Event]:
    stream.missed += response.missed_events
    return [response.event] if response.HasField("event") else []


def _metrics(stream: Stream, response) -> List[pb.StreamMetricsResponse]:
    return [response]


class Client:
    """Typed methods for the common verbs; `stub` (a generated
    `ProcessManagerStub`) for every RPC of the contract, with the messages
    in `pmdaemon.pb`. Errors are `pmdaemon.errors.PmdaemonError`
    subclasses. A context manager: leaving it closes the channel.

    `timeout` (seconds) bounds each unary call; None: no bound."""

    def __init__(self, channel: grpc.Channel, *, local: bool, address: str, timeout: Optional[float] = None):
        self.channel = channel
        self.stub = pb_grpc.ProcessManagerStub(channel)
        self.local = local
        self.address = address
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<pmdaemon.Client {self.address}>"

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request, timeout: Optional[float] = None):
        try:
            return getattr(self.stub, method)(request, timeout=timeout if timeout is not None else self.timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    # -- the verbs ---------------------------------------------------------

    def ping(self) -> pb.PingResponse:
        """Which daemon answers: version, pid, home, listen addresses."""
        return self._call("Ping", pb.PingRequest())

    def start(
        self,
        script: Optional[str] = None,
        *,
        target: Optional[str] = None,
        name: str = "",
        args: Sequence[str] = (),
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        instances: Optional[int] = None,
        interpreter: Optional[str] = None,
        autorestart: Union[str, int, None] = None,
        port: str = "",
        health_check: Union[pb.HealthCheck, Mapping, None] = None,
        dependency_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
        **spec_fields,
    ) -> List[pb.ProcessInfo]:
        """Create and start an app from `script` (returns its instances), or
        start the existing apps of `target`.

        `script` is a path or a bare command; locally, relative paths resolve
        against this process's cwd and a bare command on its PATH, as with
        `pmd start`. Over TCP, give absolute paths (or a command on the
        daemon's PATH). Any other `AppSpec` field can be given by name,
        e.g. `min_uptime_ms=500`, `kill_timeout_ms=2000`, `stop_signal="SIGINT"`.
        """
        if (script is None) == (target is None):
            raise ValueError("give exactly one of script (a new app) and target (existing apps)")
        request = pb.StartProcessRequest()
        if target is not None:
            request.target = target
        else:
            if isinstance(autorestart, str):
                try:
                    autorestart = _AUTORESTART[autorestart]
                except KeyError:
                    raise ValueError(f"autorestart {autorestart!r}: always, on-failure or never") from None
            if isinstance(health_check, Mapping):
                health_check = pb.HealthCheck(**health_check)
            spec = pb.AppSpec(name=name, script=script, args=list(args), port=port, **spec_fields)
            if cwd is not None:
                spec.cwd = cwd
            if env:
                spec.env.update({str(k): str(v) for k, v in env.items()})
            if instances is not None:
                spec.instances = instances
            if interpreter is not None:
                spec.interpreter = interpreter
            if autorestart is not None:
                spec.autorestart = autorestart
            if health_check is not None:
                spec.health_check.CopyFrom(health_check)
            request.spec.CopyFrom(spec)
        if self.local:
            # What `pmd start` sends; a remote daemon gets neither.
            request.caller_cwd = os.getcwd()
            request.caller_path = os.environ.get("PATH", "")
        if dependency_timeout is not None:
            request.dependency_timeout_ms = int(dependency_timeout * 1000)
        return list(self._call("StartProcess", request, timeout).processes)

    def list(self) -> List[pb.ProcessInfo]:
        """Every instance of every app."""
        return list(self._call("ListProcesses", pb.ListProcessesRequest()).processes)

    def get(self, target: str) -> List[pb.ProcessInfo]:
        """Everything known about the target's instances (NotFound if none)."""
        return list(self._call("GetProcess", pb.GetProcessRequest(target=target)).processes)

    def stop(self, target: str, timeout: Optional[float] = None) -> List[pb.ProcessInfo]:
        return list(self._call("StopProcess", pb.StopProcessRequest(target=target), timeout).processes)

    def restart(self, target: str, *, port: str = "", timeout: Optional[float] = None) -> List[pb.ProcessInfo]:
        request = pb.RestartProcessRequest(target=target, port=port)
        return list(self._call("RestartProcess", request, timeout).processes)

    def delete(self, target: str, *, status: Union[str, int, None] = None, timeout: Optional[float] = None) -> List[pb.ProcessInfo]:
        """Stop and forget the target's apps; `status="errored"` (with
        target `all`) deletes only instances in that state."""
        request = pb.DeleteProcessRequest(target=target)
        if isinstance(status, str):
            request.status = pb.ProcessState.Value("PROCESS_STATE_" + status.upper())
        elif status is not None:
            request.status = status
        return list(self._call("DeleteProcess", request, timeout).processes)

    def scale(self, name: str, instances: int, timeout: Optional[float] = None) -> List[pb.ProcessInfo]:
        request = pb.ScaleProcessRequest(name=name, instances=instances)
        return list(self._call("ScaleProcess", request, timeout).processes)

    def logs(
        self,
        target: str = "",
        *,
        follow: bool = False,
        lines: int = 15,
        stream: Optional[str] = None,
        after_seq: Optional[int] = None,
    ) -> "Stream[pb.LogLine]":
        """The last `lines` lines of each log of the target (all apps when
        empty), then with `follow` each new line as it is written, until
        `cancel()`. Yields `LogLine` messages: `.data` is the line's bytes
        (not necessarily UTF-8), `.name`, `.id`, `.stream`, `.seq`."""
        request = pb.StreamLogsRequest(target=target, lines=lines, follow=follow, stream=_LOG_STREAMS[stream])
        if after_seq is not None:
            request.after_seq = after_seq
        return self._stream("StreamLogs", request, _log_lines)

    def events(self, target: str = "") -> "Stream[pb.Event]":
        """State changes as they happen (started, online, ready, exited,
        restarting, errored, stopped, deleted...), until `cancel()`."""
        return self._stream("WatchEvents", pb.WatchEventsRequest(target=target), _events)

    def metrics(self, target: str = "", *, interval: Optional[float] = None) -> "Stream[pb.StreamMetricsResponse]":
        """One CPU and memory sample of the target's processes per interval."""
        request = pb.StreamMetricsRequest(target=target)
        if interval is not None:
            request.interval_ms = int(interval * 1000)
        return self._stream("StreamMetrics", request, _metrics)

    def wait_ready(
        self,
        target: Union[str, Sequence[pb.ProcessInfo]],
        timeout: float = 30.0,
    ) -> List[pb.InstanceReadiness]:
        """Wait until every instance of `target` is ready (online and
        healthy, or online for its min_uptime; a one-shot job that exited 0
        counts as done), and return their readiness.

        `target` may be the list that `start()` or `restart()` returned: then
        exactly those instances are waited for, and one that crashed or was
        restarted since fails the wait even if it came back.

        Raises `NotReady` (with the daemon's report: states, reasons, last
        health error, last log lines) as soon as an instance cannot become
        ready, or once `timeout` seconds have passed."""
        request = pb.WaitReadyRequest(timeout_ms=max(1, int(timeout * 1000)))
        if isinstance(target, str):
            request.target = target
        else:
            request.target = "all"
            for info in target:
                request.baseline.add(id=info.id, restarts=info.restarts)
        last = None
        try:
            # The daemon ends the wait at `timeout`; the margin lets its
            # report arrive before the call's own deadline would.
            for response in self.stub.WaitReady(request, timeout=timeout + 10):
                last = response
                if response.ready:
                    return list(response.instances)
        except grpc.RpcError as error:
            failure = from_rpc_error(error)
            if failure.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DEADLINE_EXCEEDED):
                report = last.report if last is not None and last.report else failure.message
                instances = last.instances if last is not None else ()
                raise NotReady(failure.code, failure.message, report, instances) from None
            raise failure from None
        raise NotReady(grpc.StatusCode.UNKNOWN, "the daemon ended the wait without saying it was ready")

    def _stream(self, method: str, request, unpack) -> Stream:
        try:
            call = getattr(self.stub, method)(request)
        except grpc.RpcError as error:  # pragma: no cover (streams fail on the first next())
            raise from_rpc_error(error) from None
        return Stream(call, unpack)


__all__ = ["Client", "Stream", "connect", "default_home", "state_name", "PmdaemonError", "pb"]
