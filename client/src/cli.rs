//! The command-line surface of `pmd`: clap derive types only, no I/O.
//!
//! Every flag value is checked here, in a `value_parser` built on the shared
//! helpers of `pmdaemon_proto` (names, targets, durations, sizes, signals),
//! so a bad value is a usage error (exit 2) whose message names the flag and
//! nothing reaches the daemon. The daemon validates again.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pmdaemon_proto::Target;
use pmdaemon_proto::v1::{ProcessState, RestartPolicy};

/// pmd drives pmdaemond, a process manager for Linux with PM2's verbs.
///
/// TARGET is an app name, a numeric process id, or `all`. Every command but
/// `kill`, `ping` and `version` starts the daemon when none is running.
#[derive(Debug, Parser)]
#[command(name = "pmd", version = pmdaemon_proto::VERSION)]
pub struct Cli {
    /// Never colour the output (NO_COLOR is honoured too).
    #[arg(long, global = true)]
    pub no_color: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an app from a script or command, or start existing apps again.
    ///
    /// A script file runs with the interpreter from its shebang, else by
    /// extension (.js node, .py python3, .sh bash), else directly; a bare
    /// command name is looked up on PATH. Arguments after `--` go to the
    /// app: `pmd start sleep -- 1000`. `pmd start TARGET` (an existing
    /// name, an id or `all`) with no spec flags starts stopped apps.
    Start(Box<StartArgs>),
    /// Stop apps (stop signal, then SIGKILL after the kill timeout); they
    /// stay in the list.
    Stop(TargetsArgs),
    /// Restart apps; stopped or errored apps are started.
    Restart(TargetsArgs),
    /// Stop apps and forget them, with their log files.
    #[command(visible_alias = "del")]
    Delete(DeleteArgs),
    /// List every app instance.
    #[command(visible_alias = "ls", alias = "ps", alias = "status")]
    List(ListArgs),
    /// Show everything known about apps.
    #[command(visible_alias = "info")]
    Describe(DescribeArgs),
    /// Print the last log lines of apps, and follow new ones with -f.
    Logs(LogsArgs),
    /// Empty the log files of an app (of every app without TARGET).
    Flush(FlushArgs),
    /// Write the current app list to dump.json, for `pmd resurrect`.
    Save,
    /// Start the apps saved by `pmd save` that are not already known.
    Resurrect,
    /// Stop every app and the daemon (apps that were online come back with
    /// the next daemon).
    Kill,
    /// Check that the daemon answers (never starts one).
    Ping,
    /// Print the versions of pmd and of the running daemon.
    Version,
}

/// How `list`, `describe` and the lifecycle verbs print processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable (the default).
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
    /// YAML, same keys as JSON.
    Yaml,
}

/// `--output` for verbs that print processes.
#[derive(Debug, Clone, Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Script file, executable or command name; or an existing app's name,
    /// its id, or `all`.
    #[arg(value_name = "SCRIPT|TARGET")]
    pub script: String,

    /// Arguments passed to the app (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,

    #[command(flatten)]
    pub spec: SpecFlags,

    #[command(flatten)]
    pub output: OutputArg,
}

/// What the user said about a new app's spec. `None` / empty means "not
/// given": the daemon applies its defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct SpecFlags {
    /// App name (default: the script's file stem).
    #[arg(short, long, value_parser = parse_name)]
    pub name: Option<String>,

    /// Working directory of the app (relative to the current directory).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,

    /// Environment variable for the app; repeatable.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Program that runs the script, e.g. python3; `none` runs it directly.
    #[arg(long, value_name = "PROGRAM", value_parser = parse_interpreter)]
    pub interpreter: Option<String>,

    /// Arguments for the interpreter (split on spaces; repeatable).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub interpreter_args: Vec<String>,

    /// Restart policy; bare `--autorestart` means always.
    #[arg(
        long,
        value_enum,
        value_name = "POLICY",
        num_args = 0..=1,
        default_missing_value = "always",
        conflicts_with = "no_autorestart"
    )]
    pub autorestart: Option<AutorestartArg>,

    /// Never restart the app when it exits (same as --autorestart never).
    #[arg(long)]
    pub no_autorestart: bool,

    /// Consecutive unstable restarts before the app is errored.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_restarts: Option<u32>,

    /// A run shorter than this is unstable (ms, or e.g. 5s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--min-uptime"))]
    pub min_uptime: Option<Duration>,

    /// Delay before every restart (ms, or e.g. 500ms).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--restart-delay"))]
    pub restart_delay: Option<Duration>,

    /// Initial exponential backoff between unstable restarts; 0 disables it.
    #[arg(
        long,
        value_name = "DURATION",
        allow_hyphen_values = true,
        value_parser = duration_parser("--exp-backoff-restart-delay")
    )]
    pub exp_backoff_restart_delay: Option<Duration>,

    /// Cap of the exponential backoff.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--exp-backoff-max"))]
    pub exp_backoff_max: Option<Duration>,

    /// Wait between the stop signal and SIGKILL.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--kill-timeout"))]
    pub kill_timeout: Option<Duration>,

    /// Signal that asks the app to stop, e.g. SIGINT (default SIGTERM).
    #[arg(long, value_name = "SIGNAL", value_parser = parse_stop_signal)]
    pub stop_signal: Option<String>,

    /// Prefix each log line with a timestamp.
    #[arg(long)]
    pub time: bool,

    /// Rotate a log file when it reaches this size, e.g. 10M.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_log_max_size)]
    pub log_max_size: Option<u64>,

    /// Rotated log files to keep.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub log_max_files: Option<u32>,
}

impl SpecFlags {
    /// Whether any flag that only makes sense for a new app was given.
    pub fn any_given(&self) -> bool {
        let Self {
            name,
            cwd,
            env,
            interpreter,
            interpreter_args,
            autorestart,
            no_autorestart,
            max_restarts,
            min_uptime,
            restart_delay,
            exp_backoff_restart_delay,
            exp_backoff_max,
            kill_timeout,
            stop_signal,
            time,
            log_max_size,
            log_max_files,
        } = self;
        name.is_some()
            || cwd.is_some()
            || !env.is_empty()
            || interpreter.is_some()
            || !interpreter_args.is_empty()
            || autorestart.is_some()
            || *no_autorestart
            || max_restarts.is_some()
            || min_uptime.is_some()
            || restart_delay.is_some()
            || exp_backoff_restart_delay.is_some()
            || exp_backoff_max.is_some()
            || kill_timeout.is_some()
            || stop_signal.is_some()
            || *time
            || log_max_size.is_some()
            || log_max_files.is_some()
    }

    /// The restart policy asked for, if any.
    pub fn restart_policy(&self) -> Option<RestartPolicy> {
        if self.no_autorestart {
            return Some(RestartPolicy::Never);
        }
        self.autorestart.map(RestartPolicy::from)
    }
}

/// `--autorestart` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AutorestartArg {
    Always,
    OnFailure,
    Never,
}

impl From<AutorestartArg> for RestartPolicy {
    fn from(arg: AutorestartArg) -> Self {
        match arg {
            AutorestartArg::Always => RestartPolicy::Always,
            AutorestartArg::OnFailure => RestartPolicy::OnFailure,
            AutorestartArg::Never => RestartPolicy::Never,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct TargetsArgs {
    /// App name, process id or `all`; several may be given.
    #[arg(required = true, value_name = "TARGET", value_parser = parse_target)]
    pub targets: Vec<Target>,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// App name, process id or `all`; several may be given. Optional with
    /// --status (then: all).
    #[arg(
        value_name = "TARGET",
        value_parser = parse_target,
        required_unless_present = "status"
    )]
    pub targets: Vec<Target>,

    /// Only delete instances in this state, e.g. `pmd delete --status errored`.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub status: Option<ProcessState>,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct DescribeArgs {
    /// App name, process id or `all`.
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Target,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// App name, process id or `all` (default: all).
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Option<Target>,

    /// History lines per log file printed first.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 15,
        allow_hyphen_values = true
    )]
    pub lines: u32,

    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,

    /// Only the apps' stdout.
    #[arg(long, conflicts_with = "err")]
    pub out: bool,

    /// Only the apps' stderr.
    #[arg(long)]
    pub err: bool,

    /// Print when the daemon read each line (live lines only).
    #[arg(long)]
    pub time: bool,

    /// Print the lines alone, without the `ID|NAME | ` tag.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FlushArgs {
    /// App name, process id or `all` (default: all).
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Option<Target>,
}

// ---- value parsers: each error names its flag -----------------------------

fn parse_name(value: &str) -> Result<String, String> {
    pmdaemon_proto::validate_name(value).map_err(|e| e.to_string())?;
    Ok(value.to_string())
}

fn parse_target(value: &str) -> Result<Target, String> {
    value.parse().map_err(|e: pmdaemon_proto::InvalidInput| e.0)
}

fn parse_env(value: &str) -> Result<(String, String), String> {
    let Some((key, val)) = value.split_once('=') else {
        return Err(format!("--env: {value:?} is not K=V"));
    };
    if key.is_empty() {
        return Err(format!("--env: {value:?} has an empty variable name"));
    }
    if key.contains('\0') || val.contains('\0') {
        return Err("--env: variables cannot contain NUL bytes".to_string());
    }
    Ok((key.to_string(), val.to_string()))
}

fn parse_interpreter(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("--interpreter: empty; give a program such as python3, or `none`".into());
    }
    Ok(value.to_string())
}

fn parse_stop_signal(value: &str) -> Result<String, String> {
    pmdaemon_proto::parse_stop_signal("--stop-signal", value)
        .map(|sig| sig.as_str().to_string())
        .map_err(|e| e.0)
}

fn parse_log_max_size(value: &str) -> Result<u64, String> {
    match pmdaemon_proto::parse_size("--log-max-size", value) {
        Ok(0) => Err("--log-max-size: must be more than 0 bytes".into()),
        Ok(size) => Ok(size),
        Err(e) => Err(e.0),
    }
}

fn parse_state(value: &str) -> Result<ProcessState, String> {
    ProcessState::from_word(value).ok_or_else(|| {
        format!(
            "--status: {value:?} is not a state; use stopped, errored, online, starting, \
             stopping or waiting-restart"
        )
    })
}

fn duration_parser(
    flag: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| pmdaemon_proto::parse_duration(flag, value).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pmd").chain(args.iter().copied()))
    }

    fn start(args: &[&str]) -> StartArgs {
        match parse(args).unwrap().command {
            Command::Start(s) => *s,
            other => panic!("not start: {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_takes_app_args_after_double_dash() {
        let s = start(&["start", "sleep", "--", "1000", "--flag"]);
        assert_eq!(s.script, "sleep");
        assert_eq!(s.args, ["1000", "--flag"]);
        assert!(!s.spec.any_given());
    }

    #[test]
    fn start_parses_spec_flags() {
        let s = start(&[
            "start",
            "./server.py",
            "--name",
            "api",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--kill-timeout",
            "2s",
            "--restart-delay",
            "250",
            "--stop-signal",
            "int",
            "--log-max-size",
            "10M",
            "--max-restarts",
            "3",
            "--interpreter-args",
            "-u -X dev",
            "--time",
        ]);
        assert_eq!(s.spec.name.as_deref(), Some("api"));
        assert_eq!(
            s.spec.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(s.spec.kill_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.spec.restart_delay, Some(Duration::from_millis(250)));
        assert_eq!(s.spec.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(s.spec.log_max_size, Some(10 << 20));
        assert_eq!(s.spec.max_restarts, Some(3));
        assert_eq!(s.spec.interpreter_args, ["-u -X dev"]);
        assert!(s.spec.time);
        assert!(s.spec.any_given());
    }

    #[test]
    fn autorestart_is_optional_valued_and_conflicts_with_no_autorestart() {
        let bare = start(&["start", "x.sh", "--autorestart"]);
        assert_eq!(bare.spec.restart_policy(), Some(RestartPolicy::Always));
        let valued = start(&["start", "x.sh", "--autorestart", "on-failure"]);
        assert_eq!(valued.spec.restart_policy(), Some(RestartPolicy::OnFailure));
        let eq = start(&["start", "x.sh", "--autorestart=never"]);
        assert_eq!(eq.spec.restart_policy(), Some(RestartPolicy::Never));
        let no = start(&["start", "x.sh", "--no-autorestart"]);
        assert_eq!(no.spec.restart_policy(), Some(RestartPolicy::Never));
        assert_eq!(start(&["start", "x.sh"]).spec.restart_policy(), None);
        let err = parse(&["start", "x.sh", "--autorestart", "--no-autorestart"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_flag() {
        for (args, flag) in [
            (
                &["start", "x", "--kill-timeout", "soon"][..],
                "--kill-timeout",
            ),
            (&["start", "x", "--min-uptime", "-5"][..], "--min-uptime"),
            (
                &["start", "x", "--restart-delay", "48h"][..],
                "--restart-delay",
            ),
            (
                &["start", "x", "--stop-signal", "SIGSTOP"][..],
                "--stop-signal",
            ),
            (
                &["start", "x", "--stop-signal", "NOPE"][..],
                "--stop-signal",
            ),
            (
                &["start", "x", "--log-max-size", "lots"][..],
                "--log-max-size",
            ),
            (&["start", "x", "--name", "all"][..], "--name"),
            (&["start", "x", "--name", "a/b"][..], "--name"),
            (&["start", "x", "--env", "NOEQUALS"][..], "--env"),
            (
                &["start", "x", "--max-restarts", "-1"][..],
                "--max-restarts",
            ),
            (&["delete", "--status", "sleeping"][..], "--status"),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn targets_are_validated() {
        let err = parse(&["stop", "../etc"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        match parse(&["stop", "api", "3", "all"]).unwrap().command {
            Command::Stop(t) => assert_eq!(
                t.targets,
                [Target::Name("api".into()), Target::Id(3), Target::All]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aliases_and_output_formats() {
        assert!(matches!(parse(&["ls"]).unwrap().command, Command::List(_)));
        assert!(matches!(
            parse(&["del", "x"]).unwrap().command,
            Command::Delete(_)
        ));
        match parse(&["info", "api", "-o", "json"]).unwrap().command {
            Command::Describe(d) => assert_eq!(d.output.output, OutputFormat::Json),
            other => panic!("{other:?}"),
        }
        match parse(&["list", "--output", "yaml"]).unwrap().command {
            Command::List(l) => assert_eq!(l.output.output, OutputFormat::Yaml),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["list", "-o", "xml"]).is_err());
    }

    #[test]
    fn delete_needs_a_target_unless_status_is_given() {
        assert!(parse(&["delete"]).is_err());
        match parse(&["delete", "--status", "stopped"]).unwrap().command {
            Command::Delete(d) => {
                assert!(d.targets.is_empty());
                assert_eq!(d.status, Some(ProcessState::Stopped));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn logs_defaults_and_stream_flags() {
        match parse(&["logs"]).unwrap().command {
            Command::Logs(l) => {
                assert_eq!(l.lines, 15);
                assert!(l.target.is_none() && !l.follow);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["logs", "api", "-f", "--lines", "3", "--err"])
            .unwrap()
            .command
        {
            Command::Logs(l) => assert!(l.follow && l.err && l.lines == 3),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["logs", "--out", "--err"]).is_err());
    }
}
