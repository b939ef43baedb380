from pmdaemon._gen.google.api import annotations_pb2 as _annotations_pb2
from pmdaemon._gen.pmdaemon.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STATE_UNSPECIFIED: _ClassVar[ProcessState]
    PROCESS_STATE_STARTING: _ClassVar[ProcessState]
    PROCESS_STATE_ONLINE: _ClassVar[ProcessState]
    PROCESS_STATE_STOPPING: _ClassVar[ProcessState]
    PROCESS_STATE_STOPPED: _ClassVar[ProcessState]
    PROCESS_STATE_ERRORED: _ClassVar[ProcessState]
    PROCESS_STATE_WAITING_RESTART: _ClassVar[ProcessState]

class RestartPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESTART_POLICY_UNSPECIFIED: _ClassVar[RestartPolicy]
    RESTART_POLICY_ALWAYS: _ClassVar[RestartPolicy]
    RESTART_POLICY_ON_FAILURE: _ClassVar[RestartPolicy]
    RESTART_POLICY_NEVER: _ClassVar[RestartPolicy]

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_STREAM_UNSPECIFIED: _ClassVar[LogStream]
    LOG_STREAM_STDOUT: _ClassVar[LogStream]
    LOG_STREAM_STDERR: _ClassVar[LogStream]

class BalanceStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BALANCE_STRATEGY_UNSPECIFIED: _ClassVar[BalanceStrategy]
    BALANCE_STRATEGY_ROUND_ROBIN: _ClassVar[BalanceStrategy]
    BALANCE_STRATEGY_LEAST_CONNECTIONS: _ClassVar[BalanceStrategy]

class LogType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_TYPE_UNSPECIFIED: _ClassVar[LogType]
    LOG_TYPE_TEXT: _ClassVar[LogType]
    LOG_TYPE_JSON: _ClassVar[LogType]

class DependencyCondition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPENDENCY_CONDITION_UNSPECIFIED: _ClassVar[DependencyCondition]
    DEPENDENCY_CONDITION_STARTED: _ClassVar[DependencyCondition]
    DEPENDENCY_CONDITION_HEALTHY: _ClassVar[DependencyCondition]
    DEPENDENCY_CONDITION_COMPLETED: _ClassVar[DependencyCondition]

class HealthState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_STATE_UNSPECIFIED: _ClassVar[HealthState]
    HEALTH_STATE_UNKNOWN: _ClassVar[HealthState]
    HEALTH_STATE_HEALTHY: _ClassVar[HealthState]
    HEALTH_STATE_UNHEALTHY: _ClassVar[HealthState]

class Tracking(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACKING_UNSPECIFIED: _ClassVar[Tracking]
    TRACKING_CGROUP: _ClassVar[Tracking]
    TRACKING_PROCESS_GROUP: _ClassVar[Tracking]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_STARTED: _ClassVar[EventKind]
    EVENT_KIND_ONLINE: _ClassVar[EventKind]
    EVENT_KIND_HEALTH_CHANGED: _ClassVar[EventKind]
    EVENT_KIND_EXITED: _ClassVar[EventKind]
    EVENT_KIND_RESTARTING: _ClassVar[EventKind]
    EVENT_KIND_ERRORED: _ClassVar[EventKind]
    EVENT_KIND_STOPPED: _ClassVar[EventKind]
    EVENT_KIND_DELETED: _ClassVar[EventKind]
    EVENT_KIND_PORT_ASSIGNED: _ClassVar[EventKind]
    EVENT_KIND_READY: _ClassVar[EventKind]
    EVENT_KIND_LOGS_PAUSED: _ClassVar[EventKind]
    EVENT_KIND_LOGS_RESUMED: _ClassVar[EventKind]
    EVENT_KIND_POOL_JOINED: _ClassVar[EventKind]
    EVENT_KIND_POOL_LEFT: _ClassVar[EventKind]
    EVENT_KIND_CONNECTIONS_REFUSED: _ClassVar[EventKind]
    EVENT_KIND_CRON_RESTART: _ClassVar[EventKind]

class Readiness(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READINESS_UNSPECIFIED: _ClassVar[Readiness]
    READINESS_WAITING: _ClassVar[Readiness]
    READINESS_READY: _ClassVar[Readiness]
    READINESS_COMPLETED: _ClassVar[Readiness]
    READINESS_FAILED: _ClassVar[Readiness]

class ApplyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPLY_MODE_UNSPECIFIED: _ClassVar[ApplyMode]
    APPLY_MODE_RESTART: _ClassVar[ApplyMode]
    APPLY_MODE_RELOAD: _ClassVar[ApplyMode]

class ApplyOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPLY_OUTCOME_UNSPECIFIED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_CREATED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_UNCHANGED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_STARTED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_UPDATED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_RESTARTED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_SCALED: _ClassVar[ApplyOutcome]
    APPLY_OUTCOME_FAILED: _ClassVar[ApplyOutcome]

class TokenScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_SCOPE_UNSPECIFIED: _ClassVar[TokenScope]
    TOKEN_SCOPE_ADMIN: _ClassVar[TokenScope]
    TOKEN_SCOPE_READ_ONLY: _ClassVar[TokenScope]
PROCESS_STATE_UNSPECIFIED: ProcessState
PROCESS_STATE_STARTING: ProcessState
PROCESS_STATE_ONLINE: ProcessState
PROCESS_STATE_STOPPING: ProcessState
PROCESS_STATE_STOPPED: ProcessState
PROCESS_STATE_ERRORED: ProcessState
PROCESS_STATE_WAITING_RESTART: ProcessState
RESTART_POLICY_UNSPECIFIED: RestartPolicy
RESTART_POLICY_ALWAYS: RestartPolicy
RESTART_POLICY_ON_FAILURE: RestartPolicy
RESTART_POLICY_NEVER: RestartPolicy
LOG_STREAM_UNSPECIFIED: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_STDERR: LogStream
BALANCE_STRATEGY_UNSPECIFIED: BalanceStrategy
BALANCE_STRATEGY_ROUND_ROBIN: BalanceStrategy
BALANCE_STRATEGY_LEAST_CONNECTIONS: BalanceStrategy
LOG_TYPE_UNSPECIFIED: LogType
LOG_TYPE_TEXT: LogType
LOG_TYPE_JSON: LogType
DEPENDENCY_CONDITION_UNSPECIFIED: DependencyCondition
DEPENDENCY_CONDITION_STARTED: DependencyCondition
DEPENDENCY_CONDITION_HEALTHY: DependencyCondition
DEPENDENCY_CONDITION_COMPLETED: DependencyCondition
HEALTH_STATE_UNSPECIFIED: HealthState
HEALTH_STATE_UNKNOWN: HealthState
HEALTH_STATE_HEALTHY: HealthState
HEALTH_STATE_UNHEALTHY: HealthState
TRACKING_UNSPECIFIED: Tracking
TRACKING_CGROUP: Tracking
TRACKING_PROCESS_GROUP: Tracking
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_STARTED: EventKind
EVENT_KIND_ONLINE: EventKind
EVENT_KIND_HEALTH_CHANGED: EventKind
EVENT_KIND_EXITED: EventKind
EVENT_KIND_RESTARTING: EventKind
EVENT_KIND_ERRORED: EventKind
EVENT_KIND_STOPPED: EventKind
EVENT_KIND_DELETED: EventKind
EVENT_KIND_PORT_ASSIGNED: EventKind
EVENT_KIND_READY: EventKind
EVENT_KIND_LOGS_PAUSED: EventKind
EVENT_KIND_LOGS_RESUMED: EventKind
EVENT_KIND_POOL_JOINED: EventKind
EVENT_KIND_POOL_LEFT: EventKind
EVENT_KIND_CONNECTIONS_REFUSED: EventKind
EVENT_KIND_CRON_RESTART: EventKind
READINESS_UNSPECIFIED: Readiness
READINESS_WAITING: Readiness
READINESS_READY: Readiness
READINESS_COMPLETED: Readiness
READINESS_FAILED: Readiness
APPLY_MODE_UNSPECIFIED: ApplyMode
APPLY_MODE_RESTART: ApplyMode
APPLY_MODE_RELOAD: ApplyMode
APPLY_OUTCOME_UNSPECIFIED: ApplyOutcome
APPLY_OUTCOME_CREATED: ApplyOutcome
APPLY_OUTCOME_UNCHANGED: ApplyOutcome
APPLY_OUTCOME_STARTED: ApplyOutcome
APPLY_OUTCOME_UPDATED: ApplyOutcome
APPLY_OUTCOME_RESTARTED: ApplyOutcome
APPLY_OUTCOME_SCALED: ApplyOutcome
APPLY_OUTCOME_FAILED: ApplyOutcome
TOKEN_SCOPE_UNSPECIFIED: TokenScope
TOKEN_SCOPE_ADMIN: TokenScope
TOKEN_SCOPE_READ_ONLY: TokenScope

class AppSpec(_message.Message):
    __slots__ = ("name", "script", "args", "interpreter", "interpreter_args", "cwd", "env", "autorestart", "max_restarts", "min_uptime_ms", "restart_delay_ms", "exp_backoff_initial_ms", "exp_backoff_max_ms", "kill_timeout_ms", "stop_signal", "time", "log_max_bytes", "log_max_files", "instances", "port", "port_env", "watch", "watch_paths", "ignore_watch", "watch_delay_ms", "out_file", "error_file", "health_check", "max_memory_bytes", "depends_on", "start_limit_burst", "start_limit_interval_ms", "log_date_format", "merge_logs", "log_file", "log_type", "wait_ready", "listen_timeout_ms", "shutdown_with_message", "instance_var", "increment_var", "stop_exit_codes", "caller_env", "balance", "cron_restart")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CallerEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    INTERPRETER_FIELD_NUMBER: _ClassVar[int]
    INTERPRETER_ARGS_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    AUTORESTART_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MIN_UPTIME_MS_FIELD_NUMBER: _ClassVar[int]
    RESTART_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    EXP_BACKOFF_INITIAL_MS_FIELD_NUMBER: _ClassVar[int]
    EXP_BACKOFF_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    KILL_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    LOG_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOG_MAX_FILES_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PORT_ENV_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    WATCH_PATHS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_WATCH_FIELD_NUMBER: _ClassVar[int]
    WATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    OUT_FILE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FILE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    START_LIMIT_BURST_FIELD_NUMBER: _ClassVar[int]
    START_LIMIT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LOG_DATE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MERGE_LOGS_FIELD_NUMBER: _ClassVar[int]
    LOG_FILE_FIELD_NUMBER: _ClassVar[int]
    LOG_TYPE_FIELD_NUMBER: _ClassVar[int]
    WAIT_READY_FIELD_NUMBER: _ClassVar[int]
    LISTEN_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_WITH_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_VAR_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_VAR_FIELD_NUMBER: _ClassVar[int]
    STOP_EXIT_CODES_FIELD_NUMBER: _ClassVar[int]
    CALLER_ENV_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    CRON_RESTART_FIELD_NUMBER: _ClassVar[int]
    name: str
    script: str
    args: _containers.RepeatedScalarFieldContainer[str]
    interpreter: str
    interpreter_args: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    env: _containers.ScalarMap[str, str]
    autorestart: RestartPolicy
    max_restarts: int
    min_uptime_ms: int
    restart_delay_ms: int
    exp_backoff_initial_ms: int
    exp_backoff_max_ms: int
    kill_timeout_ms: int
    stop_signal: str
    time: bool
    log_max_bytes: int
    log_max_files: int
    instances: int
    port: str
    port_env: str
    watch: bool
    watch_paths: _containers.RepeatedScalarFieldContainer[str]
    ignore_watch: _containers.RepeatedScalarFieldContainer[str]
    watch_delay_ms: int
    out_file: str
    error_file: str
    health_check: HealthCheck
    max_memory_bytes: int
    depends_on: _containers.RepeatedCompositeFieldContainer[Dependency]
    start_limit_burst: int
    start_limit_interval_ms: int
    log_date_format: str
    merge_logs: bool
    log_file: str
    log_type: LogType
    wait_ready: bool
    listen_timeout_ms: int
    shutdown_with_message: bool
    instance_var: str
    increment_var: str
    stop_exit_codes: _containers.RepeatedScalarFieldContainer[int]
    caller_env: _containers.ScalarMap[str, str]
    balance: BalanceSpec
    cron_restart: str
    def __init__(self, name: _Optional[str] = ..., script: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., interpreter: _Optional[str] = ..., interpreter_args: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., autorestart: _Optional[_Union[RestartPolicy, str]] = ..., max_restarts: _Optional[int] = ..., min_uptime_ms: _Optional[int] = ..., restart_delay_ms: _Optional[int] = ..., exp_backoff_initial_ms: _Optional[int] = ..., exp_backoff_max_ms: _Optional[int] = ..., kill_timeout_ms: _Optional[int] = ..., stop_signal: _Optional[str] = ..., time: bool = ..., log_max_bytes: _Optional[int] = ..., log_max_files: _Optional[int] = ..., instances: _Optional[int] = ..., port: _Optional[str] = ..., port_env: _Optional[str] = ..., watch: bool = ..., watch_paths: _Optional[_Iterable[str]] = ..., ignore_watch: _Optional[_Iterable[str]] = ..., watch_delay_ms: _Optional[int] = ..., out_file: _Optional[str] = ..., error_file: _Optional[str] = ..., health_check: _Optional[_Union[HealthCheck, _Mapping]] = ..., max_memory_bytes: _Optional[int] = ..., depends_on: _Optional[_Iterable[_Union[Dependency, _Mapping]]] = ..., start_limit_burst: _Optional[int] = ..., start_limit_interval_ms: _Optional[int] = ..., log_date_format: _Optional[str] = ..., merge_logs: bool = ..., log_file: _Optional[str] = ..., log_type: _Optional[_Union[LogType, str]] = ..., wait_ready: bool = ..., listen_timeout_ms: _Optional[int] = ..., shutdown_with_message: bool = ..., instance_var: _Optional[str] = ..., increment_var: _Optional[str] = ..., stop_exit_codes: _Optional[_Iterable[int]] = ..., caller_env: _Optional[_Mapping[str, str]] = ..., balance: _Optional[_Union[BalanceSpec, _Mapping]] = ..., cron_restart: _Optional[str] = ...) -> None: ...

class BalanceSpec(_message.Message):
    __slots__ = ("strategy", "proxy_protocol", "drain_timeout_ms", "hold_timeout_ms", "address", "instance_ports")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PROXY_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    HOLD_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_PORTS_FIELD_NUMBER: _ClassVar[int]
    strategy: BalanceStrategy
    proxy_protocol: bool
    drain_timeout_ms: int
    hold_timeout_ms: int
    address: str
    instance_ports: str
    def __init__(self, strategy: _Optional[_Union[BalanceStrategy, str]] = ..., proxy_protocol: bool = ..., drain_timeout_ms: _Optional[int] = ..., hold_timeout_ms: _Optional[int] = ..., address: _Optional[str] = ..., instance_ports: _Optional[str] = ...) -> None: ...

class BalancerStatus(_message.Message):
    __slots__ = ("public_port", "address", "listening", "ready_instances", "held_connections", "refused_connections", "problem")
    PUBLIC_PORT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LISTENING_FIELD_NUMBER: _ClassVar[int]
    READY_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    HELD_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    public_port: int
    address: str
    listening: bool
    ready_instances: int
    held_connections: int
    refused_connections: int
    problem: str
    def __init__(self, public_port: _Optional[int] = ..., address: _Optional[str] = ..., listening: bool = ..., ready_instances: _Optional[int] = ..., held_connections: _Optional[int] = ..., refused_connections: _Optional[int] = ..., problem: _Optional[str] = ...) -> None: ...

class InstanceBalance(_message.Message):
    __slots__ = ("in_pool", "active_connections", "total_connections", "bytes_in", "bytes_out")
    IN_POOL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    in_pool: bool
    active_connections: int
    total_connections: int
    bytes_in: int
    bytes_out: int
    def __init__(self, in_pool: bool = ..., active_connections: _Optional[int] = ..., total_connections: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("http", "tcp", "script", "interval_ms", "timeout_ms", "retries", "start_period_ms", "expected_status")
    HTTP_FIELD_NUMBER: _ClassVar[int]
    TCP_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    START_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_STATUS_FIELD_NUMBER: _ClassVar[int]
    http: str
    tcp: str
    script: str
    interval_ms: int
    timeout_ms: int
    retries: int
    start_period_ms: int
    expected_status: int
    def __init__(self, http: _Optional[str] = ..., tcp: _Optional[str] = ..., script: _Optional[str] = ..., interval_ms: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., retries: _Optional[int] = ..., start_period_ms: _Optional[int] = ..., expected_status: _Optional[int] = ...) -> None: ...

class Dependency(_message.Message):
    __slots__ = ("app", "condition")
    APP_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    app: str
    condition: DependencyCondition
    def __init__(self, app: _Optional[str] = ..., condition: _Optional[_Union[DependencyCondition, str]] = ...) -> None: ...

class ProcessInfo(_message.Message):
    __slots__ = ("id", "name", "instance", "state", "pid", "restarts", "unstable_restarts", "started_at_ms", "last_exit_code", "last_exit_signal", "last_exit_at_ms", "next_restart_at_ms", "status_reason", "spec", "argv", "cwd", "out_log_path", "err_log_path", "created_at_ms", "port", "port_override", "cpu_percent", "memory_bytes", "health", "last_health_error", "last_health_check_at_ms", "last_health_error_at_ms", "last_health_check_passed", "ready", "tracking", "log_path", "env_values_hidden", "balancer", "balance", "next_cron_restart_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    UNSTABLE_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NEXT_RESTART_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    OUT_LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    ERR_LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PORT_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    LAST_HEALTH_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_HEALTH_CHECK_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEALTH_ERROR_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEALTH_CHECK_PASSED_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    TRACKING_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    ENV_VALUES_HIDDEN_FIELD_NUMBER: _ClassVar[int]
    BALANCER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_CRON_RESTART_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    instance: int
    state: ProcessState
    pid: int
    restarts: int
    unstable_restarts: int
    started_at_ms: int
    last_exit_code: int
    last_exit_signal: str
    last_exit_at_ms: int
    next_restart_at_ms: int
    status_reason: str
    spec: AppSpec
    argv: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    out_log_path: str
    err_log_path: str
    created_at_ms: int
    port: int
    port_override: bool
    cpu_percent: float
    memory_bytes: int
    health: HealthState
    last_health_error: str
    last_health_check_at_ms: int
    last_health_error_at_ms: int
    last_health_check_passed: bool
    ready: bool
    tracking: Tracking
    log_path: str
    env_values_hidden: bool
    balancer: BalancerStatus
    balance: InstanceBalance
    next_cron_restart_at_ms: int
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., instance: _Optional[int] = ..., state: _Optional[_Union[ProcessState, str]] = ..., pid: _Optional[int] = ..., restarts: _Optional[int] = ..., unstable_restarts: _Optional[int] = ..., started_at_ms: _Optional[int] = ..., last_exit_code: _Optional[int] = ..., last_exit_signal: _Optional[str] = ..., last_exit_at_ms: _Optional[int] = ..., next_restart_at_ms: _Optional[int] = ..., status_reason: _Optional[str] = ..., spec: _Optional[_Union[AppSpec, _Mapping]] = ..., argv: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., out_log_path: _Optional[str] = ..., err_log_path: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., port: _Optional[int] = ..., port_override: bool = ..., cpu_percent: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., health: _Optional[_Union[HealthState, str]] = ..., last_health_error: _Optional[str] = ..., last_health_check_at_ms: _Optional[int] = ..., last_health_error_at_ms: _Optional[int] = ..., last_health_check_passed: bool = ..., ready: bool = ..., tracking: _Optional[_Union[Tracking, str]] = ..., log_path: _Optional[str] = ..., env_values_hidden: bool = ..., balancer: _Optional[_Union[BalancerStatus, _Mapping]] = ..., balance: _Optional[_Union[InstanceBalance, _Mapping]] = ..., next_cron_restart_at_ms: _Optional[int] = ...) -> None: ...

class StartProcessRequest(_message.Message):
    __slots__ = ("spec", "target", "caller_cwd", "caller_path", "dependency_timeout_ms")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CALLER_CWD_FIELD_NUMBER: _ClassVar[int]
    CALLER_PATH_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    spec: AppSpec
    target: str
    caller_cwd: str
    caller_path: str
    dependency_timeout_ms: int
    def __init__(self, spec: _Optional[_Union[AppSpec, _Mapping]] = ..., target: _Optional[str] = ..., caller_cwd: _Optional[str] = ..., caller_path: _Optional[str] = ..., dependency_timeout_ms: _Optional[int] = ...) -> None: ...

class StartProcessResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class StopProcessRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class StopProcessResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class RestartProcessRequest(_message.Message):
    __slots__ = ("target", "port", "dependency_timeout_ms", "update_env", "caller_env")
    class CallerEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_ENV_FIELD_NUMBER: _ClassVar[int]
    CALLER_ENV_FIELD_NUMBER: _ClassVar[int]
    target: str
    port: str
    dependency_timeout_ms: int
    update_env: bool
    caller_env: _containers.ScalarMap[str, str]
    def __init__(self, target: _Optional[str] = ..., port: _Optional[str] = ..., dependency_timeout_ms: _Optional[int] = ..., update_env: bool = ..., caller_env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RestartProcessResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class StreamMetricsRequest(_message.Message):
    __slots__ = ("target", "interval_ms")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    target: str
    interval_ms: int
    def __init__(self, target: _Optional[str] = ..., interval_ms: _Optional[int] = ...) -> None: ...

class ProcessMetrics(_message.Message):
    __slots__ = ("id", "name", "state", "pid", "cpu_percent", "memory_bytes", "restarts", "started_at_ms", "health", "port", "balance")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    state: ProcessState
    pid: int
    cpu_percent: float
    memory_bytes: int
    restarts: int
    started_at_ms: int
    health: HealthState
    port: int
    balance: InstanceBalance
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., state: _Optional[_Union[ProcessState, str]] = ..., pid: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., restarts: _Optional[int] = ..., started_at_ms: _Optional[int] = ..., health: _Optional[_Union[HealthState, str]] = ..., port: _Optional[int] = ..., balance: _Optional[_Union[InstanceBalance, _Mapping]] = ...) -> None: ...

class StreamMetricsResponse(_message.Message):
    __slots__ = ("at_ms", "processes")
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    at_ms: int
    processes: _containers.RepeatedCompositeFieldContainer[ProcessMetrics]
    def __init__(self, at_ms: _Optional[int] = ..., processes: _Optional[_Iterable[_Union[ProcessMetrics, _Mapping]]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "at_ms", "id", "name", "kind", "state", "pid", "exit_code", "signal", "port", "health", "detail")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_ms: int
    id: int
    name: str
    kind: EventKind
    state: ProcessState
    pid: int
    exit_code: int
    signal: str
    port: int
    health: HealthState
    detail: str
    def __init__(self, seq: _Optional[int] = ..., at_ms: _Optional[int] = ..., id: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[EventKind, str]] = ..., state: _Optional[_Union[ProcessState, str]] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., signal: _Optional[str] = ..., port: _Optional[int] = ..., health: _Optional[_Union[HealthState, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event", "missed_events")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    MISSED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    event: Event
    missed_events: int
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ..., missed_events: _Optional[int] = ...) -> None: ...

class ReloadProcessRequest(_message.Message):
    __slots__ = ("target", "ready_timeout_ms", "update_env", "caller_env")
    class CallerEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TARGET_FIELD_NUMBER: _ClassVar[int]
    READY_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_ENV_FIELD_NUMBER: _ClassVar[int]
    CALLER_ENV_FIELD_NUMBER: _ClassVar[int]
    target: str
    ready_timeout_ms: int
    update_env: bool
    caller_env: _containers.ScalarMap[str, str]
    def __init__(self, target: _Optional[str] = ..., ready_timeout_ms: _Optional[int] = ..., update_env: bool = ..., caller_env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReloadProcessResponse(_message.Message):
    __slots__ = ("process", "done", "total")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    done: int
    total: int
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class WaitReadyRequest(_message.Message):
    __slots__ = ("target", "timeout_ms", "since_ms", "baseline")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    target: str
    timeout_ms: int
    since_ms: int
    baseline: _containers.RepeatedCompositeFieldContainer[WaitReadyBaseline]
    def __init__(self, target: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., since_ms: _Optional[int] = ..., baseline: _Optional[_Iterable[_Union[WaitReadyBaseline, _Mapping]]] = ...) -> None: ...

class WaitReadyBaseline(_message.Message):
    __slots__ = ("id", "restarts")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    restarts: int
    def __init__(self, id: _Optional[int] = ..., restarts: _Optional[int] = ...) -> None: ...

class InstanceReadiness(_message.Message):
    __slots__ = ("process", "readiness", "detail")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    readiness: Readiness
    detail: str
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., readiness: _Optional[_Union[Readiness, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class WaitReadyResponse(_message.Message):
    __slots__ = ("instances", "ready", "report")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[InstanceReadiness]
    ready: bool
    report: str
    def __init__(self, instances: _Optional[_Iterable[_Union[InstanceReadiness, _Mapping]]] = ..., ready: bool = ..., report: _Optional[str] = ...) -> None: ...

class ScaleProcessRequest(_message.Message):
    __slots__ = ("name", "instances")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    instances: int
    def __init__(self, name: _Optional[str] = ..., instances: _Optional[int] = ...) -> None: ...

class ScaleProcessResponse(_message.Message):
    __slots__ = ("processes", "delta")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    delta: int
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., delta: _Optional[int] = ...) -> None: ...

class ApplyAppsRequest(_message.Message):
    __slots__ = ("apps", "caller_cwd", "mode", "dependency_timeout_ms", "ready_timeout_ms", "caller_path", "update_env")
    APPS_FIELD_NUMBER: _ClassVar[int]
    CALLER_CWD_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    READY_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    CALLER_PATH_FIELD_NUMBER: _ClassVar[int]
    UPDATE_ENV_FIELD_NUMBER: _ClassVar[int]
    apps: _containers.RepeatedCompositeFieldContainer[AppSpec]
    caller_cwd: str
    mode: ApplyMode
    dependency_timeout_ms: int
    ready_timeout_ms: int
    caller_path: str
    update_env: bool
    def __init__(self, apps: _Optional[_Iterable[_Union[AppSpec, _Mapping]]] = ..., caller_cwd: _Optional[str] = ..., mode: _Optional[_Union[ApplyMode, str]] = ..., dependency_timeout_ms: _Optional[int] = ..., ready_timeout_ms: _Optional[int] = ..., caller_path: _Optional[str] = ..., update_env: bool = ...) -> None: ...

class AppliedApp(_message.Message):
    __slots__ = ("name", "outcome", "changed_fields", "processes", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    outcome: ApplyOutcome
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    error: str
    def __init__(self, name: _Optional[str] = ..., outcome: _Optional[_Union[ApplyOutcome, str]] = ..., changed_fields: _Optional[_Iterable[str]] = ..., processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class ApplyAppsResponse(_message.Message):
    __slots__ = ("apps",)
    APPS_FIELD_NUMBER: _ClassVar[int]
    apps: _containers.RepeatedCompositeFieldContainer[AppliedApp]
    def __init__(self, apps: _Optional[_Iterable[_Union[AppliedApp, _Mapping]]] = ...) -> None: ...

class DeleteProcessRequest(_message.Message):
    __slots__ = ("target", "status")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    target: str
    status: ProcessState
    def __init__(self, target: _Optional[str] = ..., status: _Optional[_Union[ProcessState, str]] = ...) -> None: ...

class DeleteProcessResponse(_message.Message):
    __slots__ = ("processes", "kept")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    kept: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., kept: _Optional[_Iterable[str]] = ...) -> None: ...

class ListProcessesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProcessesResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class GetProcessRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class GetProcessResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class StreamLogsRequest(_message.Message):
    __slots__ = ("target", "lines", "follow", "stream", "after_seq")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    target: str
    lines: int
    follow: bool
    stream: LogStream
    after_seq: int
    def __init__(self, target: _Optional[str] = ..., lines: _Optional[int] = ..., follow: bool = ..., stream: _Optional[_Union[LogStream, str]] = ..., after_seq: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("seq", "id", "name", "stream", "data", "timestamp_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    id: int
    name: str
    stream: LogStream
    data: bytes
    timestamp_ms: int
    def __init__(self, seq: _Optional[int] = ..., id: _Optional[int] = ..., name: _Optional[str] = ..., stream: _Optional[_Union[LogStream, str]] = ..., data: _Optional[bytes] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class StreamLogsResponse(_message.Message):
    __slots__ = ("lines", "missed_lines")
    LINES_FIELD_NUMBER: _ClassVar[int]
    MISSED_LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    missed_lines: int
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., missed_lines: _Optional[int] = ...) -> None: ...

class FlushLogsRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class FlushLogsResponse(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, files: _Optional[_Iterable[str]] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("version", "daemon_pid", "started_at_ms", "home", "notices", "listen")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DAEMON_PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HOME_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    version: str
    daemon_pid: int
    started_at_ms: int
    home: str
    notices: _containers.RepeatedScalarFieldContainer[str]
    listen: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., daemon_pid: _Optional[int] = ..., started_at_ms: _Optional[int] = ..., home: _Optional[str] = ..., notices: _Optional[_Iterable[str]] = ..., listen: _Optional[_Iterable[str]] = ...) -> None: ...

class SaveProcessesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SaveProcessesResponse(_message.Message):
    __slots__ = ("path", "apps")
    PATH_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    path: str
    apps: int
    def __init__(self, path: _Optional[str] = ..., apps: _Optional[int] = ...) -> None: ...

class ResurrectRequest(_message.Message):
    __slots__ = ("caller_path",)
    CALLER_PATH_FIELD_NUMBER: _ClassVar[int]
    caller_path: str
    def __init__(self, caller_path: _Optional[str] = ...) -> None: ...

class ResurrectResponse(_message.Message):
    __slots__ = ("processes", "skipped", "failed")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    skipped: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., skipped: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[str]] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("name", "scope", "created_at_ms", "expires_at_ms", "last_used_at_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    scope: TokenScope
    created_at_ms: int
    expires_at_ms: int
    last_used_at_ms: int
    def __init__(self, name: _Optional[str] = ..., scope: _Optional[_Union[TokenScope, str]] = ..., created_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., last_used_at_ms: _Optional[int] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("name", "read_only", "expires_in_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    read_only: bool
    expires_in_ms: int
    def __init__(self, name: _Optional[str] = ..., read_only: bool = ..., expires_in_ms: _Optional[int] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("secret", "info")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    secret: str
    info: TokenInfo
    def __init__(self, secret: _Optional[str] = ..., info: _Optional[_Union[TokenInfo, _Mapping]] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: TokenInfo
    def __init__(self, info: _Optional[_Union[TokenInfo, _Mapping]] = ...) -> None: ...

class ResetProcessRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class ResetProcessResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class SignalProcessRequest(_message.Message):
    __slots__ = ("target", "signal")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    target: str
    signal: str
    def __init__(self, target: _Optional[str] = ..., signal: _Optional[str] = ...) -> None: ...

class SignalProcessResponse(_message.Message):
    __slots__ = ("processes", "signal")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    signal: str
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., signal: _Optional[str] = ...) -> None: ...

class GetProcessEnvRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class ProcessEnv(_message.Message):
    __slots__ = ("id", "name", "env")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    env: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetProcessEnvResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessEnv]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessEnv, _Mapping]]] = ...) -> None: ...
