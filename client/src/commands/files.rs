//! Ecosystem FILE targets: `start|restart|reload FILE` send the file's apps
//! in one ApplyApps (the daemon checks them all before changing anything),
//! `stop|delete FILE` act on exactly the apps the file names. `--env NAME`
//! and `--only` only make sense with a FILE, and a FILE must be the only
//! target; both are usage errors otherwise.
//!
//! Notes that are not errors (an ignored `deploy` section, an environment
//! no app has, apps of the file the daemon does not know) and warnings (a
//! key pmd ignores or does not know, one line per key and file) go to
//! stderr with the `[pmd]` prefix, so stdout stays what scripts parse.
//! `start --strict FILE` and `validate FILE` make every warning an error.

use std::time::Instant;

use pmdaemon_proto::Target;
use pmdaemon_proto::v1::{
    AppSpec, ApplyAppsRequest, ApplyAppsResponse, ApplyMode, ApplyOutcome, ListProcessesRequest,
};

use super::{Ctx, RpcResultExt, remote_path_problem, wait};
use crate::UsageError;
use crate::cli::{OutputFormat, StartArgs, TargetArg, WaitArg};
use crate::connect::Client;
use crate::ecosystem::{self, Ecosystem};
use crate::render;
use crate::term::{self, with_spinner};

/// A file's apps as the command line selected them.
pub struct Loaded {
    pub file: Ecosystem,
    pub specs: Vec<AppSpec>,
    /// `(app, dependency)`: dependencies of selected apps that `--only`
    /// leaves out.
    pub left_out: Vec<(String, String)>,
}

/// The FILE among `targets`, if there is one; checks that it is the only
/// target and that `--only` / `--env NAME` come with one.
pub(super) fn file_target<'a>(
    targets: &'a [TargetArg],
    only: &[String],
    environment: Option<&str>,
) -> anyhow::Result<Option<&'a str>> {
    let file = targets.iter().find_map(|t| match t {
        TargetArg::File(path) => Some(path.as_str()),
        TargetArg::Target(_) => None,
    });
    match file {
        Some(path) if targets.len() > 1 => Err(UsageError(format!(
            "{path} is an ecosystem file: give it as the only TARGET (use --only to pick apps)"
        ))
        .into()),
        Some(path) => Ok(Some(path)),
        None if !only.is_empty() => Err(UsageError(
            "--only selects apps of an ecosystem file; give the file as TARGET".into(),
        )
        .into()),
        None => match environment {
            Some(name) => Err(UsageError(format!(
                "--env {name} selects the env_{name} section of an ecosystem file; give the \
                 file as TARGET"
            ))
            .into()),
            None => Ok(None),
        },
    }
}

fn note(text: &str) {
    eprintln!("[pmd] {text}");
}

/// Loads `path` and selects its apps, with notes and warnings on stderr;
/// with `strict` (`start --strict`), a warning is an error.
pub(super) fn load(
    path: &str,
    environment: Option<&str>,
    only: &[String],
    strict: bool,
) -> anyhow::Result<Loaded> {
    let file = ecosystem::load(path, strict)?;
    for text in &file.notes {
        note(&format!("{path}: {text}"));
    }
    for text in &file.warnings {
        note(&format!("warning: {text}"));
    }
    if let Some(name) = environment
        && !file.has_environment(name)
    {
        note(&format!(
            "{path}: no app has an env_{name} section; each app gets its `env` alone"
        ));
    }
    let specs = file.specs(environment, only)?;
    let left_out = file
        .dependencies_left_out(only)
        .into_iter()
        .map(|(app, dependency)| (app.to_string(), dependency.to_string()))
        .collect();
    Ok(Loaded {
        file,
        specs,
        left_out,
    })
}

/// `pmd validate FILE`: the file loaded as `start --strict` loads it,
/// nothing sent anywhere. Exit 0 and a summary when it is clean.
pub(super) fn validate(args: &crate::cli::ValidateArgs) -> anyhow::Result<()> {
    let path = args.file.as_str();
    if ecosystem::format_of(std::path::Path::new(path)).is_none() {
        return Err(UsageError(format!(
            "{path} is not an ecosystem file: pmd reads .yaml, .yml, .json and \
             ecosystem*.js / *.config.js|cjs|mjs files"
        ))
        .into());
    }
    let file = ecosystem::load(path, true)?;
    for text in &file.notes {
        note(&format!("{path}: {text}"));
    }
    let count = file.apps.len();
    println!(
        "{path}: {count} app{} ({}), no problems",
        if count == 1 { "" } else { "s" },
        file.names().join(", ")
    );
    Ok(())
}

/// `pmd start FILE [--env NAME] [--only A,B]`.
pub(super) async fn start(ctx: &Ctx, args: &StartArgs) -> anyhow::Result<()> {
    let environment = start_environment(args)?;
    let loaded = load(&args.script, environment, &args.only.only, args.strict)?;
    let options = ApplyOptions {
        update_env: args.update_env.update_env,
        ..Default::default()
    };
    apply_with(
        ctx,
        &loaded,
        ApplyMode::Unspecified,
        args.output,
        args.wait,
        options,
    )
    .await
}

/// The `--env NAME` of `start FILE`, after refusing what does not go with
/// a file: arguments, `--env K=V`, flags that describe one app.
fn start_environment(args: &StartArgs) -> anyhow::Result<Option<&str>> {
    let path = &args.script;
    if !args.args.is_empty() {
        return Err(UsageError(format!(
            "arguments after -- are for a single app; {path} sets each app's `args`"
        ))
        .into());
    }
    if args.spec.env_vars().next().is_some() {
        return Err(UsageError(format!(
            "--env K=V sets a variable of a single app; with an ecosystem file, --env NAME \
             selects each app's env_NAME section (set variables under `env` in {path})"
        ))
        .into());
    }
    if args.spec.any_app_flag() {
        return Err(UsageError(format!(
            "app flags such as --name, --instances or --port describe a single app; {path} \
             sets them for each app (only --env NAME and --only go with a file)"
        ))
        .into());
    }
    let environments: Vec<&str> = args.spec.environments().collect();
    if environments.len() > 1 {
        return Err(UsageError(format!(
            "--env: give one environment, not {}",
            environments.join(" and ")
        ))
        .into());
    }
    Ok(environments.first().copied())
}

/// PM2's `startOrRestart|startOrReload|startOrGracefulReload FILE`: the
/// file's missing apps are created and the others restarted or reloaded,
/// which is what `pmd restart|reload FILE` do.
pub(super) async fn start_or(
    ctx: &Ctx,
    args: crate::cli::StartOrArgs,
    mode: ApplyMode,
) -> anyhow::Result<()> {
    let path = std::path::Path::new(&args.file);
    if ecosystem::format_of(path).is_some() && !path.exists() {
        anyhow::bail!("{}: no such ecosystem file", args.file);
    }
    if !ecosystem::is_file_target(&args.file) {
        return Err(UsageError(format!(
            "{}: not an ecosystem file (.yaml, .yml, .json, ecosystem*.js, *.config.js); \
             for an app use `pmd restart` or `pmd reload`",
            args.file
        ))
        .into());
    }
    let environment = args.environment.environment.as_deref();
    let loaded = load(&args.file, environment, &args.only.only, false)?;
    let options = ApplyOptions {
        update_env: args.update_env.update_env,
        ready_timeout_ms: (mode == ApplyMode::Reload && args.wait.wait_ready)
            .then(|| u64::try_from(args.wait.wait_timeout.as_millis()).unwrap_or(u64::MAX)),
    };
    apply_with(ctx, &loaded, mode, args.output.output, args.wait, options).await
}

/// What `apply_with` passes on besides the apps.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ApplyOptions {
    /// For reloads: most time one replacement may take to be ready.
    pub ready_timeout_ms: Option<u64>,
    /// `--update-env`: existing apps get this shell's environment merged
    /// over the one they captured.
    pub update_env: bool,
}

/// Sends the selected apps in one ApplyApps and prints one line per app.
pub(super) async fn apply_with(
    ctx: &Ctx,
    loaded: &Loaded,
    mode: ApplyMode,
    output: OutputFormat,
    wait: WaitArg,
    options: ApplyOptions,
) -> anyhow::Result<()> {
    // --wait-timeout bounds the whole wait: the daemon's wait for
    // dependencies inside ApplyApps, then the readiness wait here.
    let wait = WaitArg {
        since: Some(Instant::now()),
        ..wait
    };
    let request = apply_request(ctx, loaded, mode, wait, options)?;
    let mut client = ctx.client().await?;
    let doing = match mode {
        ApplyMode::Unspecified => "starting",
        ApplyMode::Restart => "restarting",
        ApplyMode::Reload => "reloading",
    };
    let label = format!("{doing} the apps of {}", loaded.file.display);
    let response = with_spinner(label, client.apply_apps(request))
        .await
        .rpc()?;
    if output == OutputFormat::Table {
        term::print(&applied_lines(&response, mode))?;
    }
    refuse_failed(&mut client, &response, mode).await?;
    let processes: Vec<_> = response
        .apps
        .iter()
        .flat_map(|app| app.processes.iter().cloned())
        .collect();
    wait::finish(&mut client, &processes, output, wait).await
}

/// The ApplyApps request of a file's selected apps, after the notes about
/// dependencies `--only` leaves out. For a remote daemon, relative paths
/// are refused before anything is sent; `~` is expanded first (a remote
/// daemon's is refused).
fn apply_request(
    ctx: &Ctx,
    loaded: &Loaded,
    mode: ApplyMode,
    wait: WaitArg,
    options: ApplyOptions,
) -> anyhow::Result<ApplyAppsRequest> {
    for (app, dependency) in &loaded.left_out {
        note(&format!(
            "{}: {app} depends on {dependency}, which --only leaves out: the daemon waits for \
             the {dependency} it already runs",
            loaded.file.display
        ));
    }
    let mut apps = loaded.specs.clone();
    for spec in &mut apps {
        let label = format!("{}: app {}", loaded.file.display, spec.name);
        crate::home::resolve_paths(spec, ctx.remote.is_some(), &label).map_err(UsageError)?;
    }
    let caller_cwd = if ctx.remote.is_some() {
        remote_paths(loaded)?;
        String::new()
    } else {
        loaded.file.dir.clone()
    };
    // Each app captures this shell's environment when it is created (the
    // daemon keeps an existing app's unless update_env).
    let caller_env = ctx.caller_env(options.update_env);
    for spec in &mut apps {
        spec.caller_env = caller_env.clone();
    }
    Ok(ApplyAppsRequest {
        apps,
        caller_cwd,
        mode: mode.into(),
        dependency_timeout_ms: wait.dependency_timeout_ms(),
        ready_timeout_ms: options.ready_timeout_ms,
        caller_path: ctx.caller_path(),
        update_env: options.update_env,
    })
}

/// One line per app that was applied (`started api (ids 0-3)`).
fn applied_lines(response: &ApplyAppsResponse, mode: ApplyMode) -> String {
    response
        .apps
        .iter()
        .filter(|app| app.outcome() != ApplyOutcome::Failed)
        .map(|app| render::applied(app, mode) + "\n")
        .collect()
}

/// An error naming every app of the response that was not applied, each
/// with the state of its instances as --wait-ready reports them; Ok when
/// every app was.
async fn refuse_failed(
    client: &mut Client,
    response: &ApplyAppsResponse,
    mode: ApplyMode,
) -> anyhow::Result<()> {
    let mut failed: Vec<String> = Vec::new();
    for app in response
        .apps
        .iter()
        .filter(|app| app.outcome() == ApplyOutcome::Failed)
    {
        let line = anyhow::anyhow!("{}", render::applied(app, mode));
        failed.push(format!(
            "{:#}",
            wait::explain(client, &app.name, line).await
        ));
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("\n"));
    }
    Ok(())
}

/// An ecosystem FILE loaded as `pmd start FILE [--env NAME] [--only A,B]`
/// loads it (notes and warnings on stderr), for `pmdaemond run`, which
/// loads its file before it starts anything: a file that is not an
/// ecosystem file, or that cannot be used, is a [`UsageError`].
pub fn load_file(path: &str, environment: Option<&str>, only: &[String]) -> anyhow::Result<Loaded> {
    if ecosystem::format_of(std::path::Path::new(path)).is_none() {
        return Err(UsageError(format!(
            "{path} is not an ecosystem file: pmdaemond run reads .yaml, .yml, .json and \
             ecosystem*.js / *.config.js|cjs|mjs files"
        ))
        .into());
    }
    load(path, environment, only, false).map_err(|e| UsageError(format!("{e:#}")).into())
}

/// `pmd start FILE` on the local daemon `client` talks to, for `pmdaemond
/// run`: the same ApplyApps (this process's environment, PATH and the
/// file's directory), the same outcome. Returns the lines `pmd start`
/// prints, for the caller to show where it wants.
pub async fn start_file(client: &mut Client, loaded: &Loaded) -> anyhow::Result<String> {
    let ctx = Ctx {
        home: crate::connect::Home::from_env(),
        colours: term::Colours::OFF,
        remote: None,
    };
    let mode = ApplyMode::Unspecified;
    let request = apply_request(
        &ctx,
        loaded,
        mode,
        WaitArg::default(),
        ApplyOptions::default(),
    )?;
    let response = client.apply_apps(request).await.rpc()?;
    let lines = applied_lines(&response, mode);
    refuse_failed(client, &response, mode)
        .await
        .map_err(|e| e.context(lines.trim_end().to_string()))?;
    Ok(lines)
}

/// For a remote daemon: every problem of the file's `script` and `cwd`
/// values (see [`remote_path_problem`]), at once.
fn remote_paths(loaded: &Loaded) -> Result<(), UsageError> {
    let base = std::path::Path::new(&loaded.file.dir);
    let problems: Vec<String> = loaded
        .specs
        .iter()
        .filter_map(|spec| {
            let label = format!("{}: app {}: script", loaded.file.display, spec.name);
            let cwd_label = format!("{}: app {}: cwd", loaded.file.display, spec.name);
            remote_path_problem(&label, &cwd_label, &spec.script, &spec.cwd, base)
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(UsageError(problems.join("\n")))
    }
}

/// The apps of `path` (as `--only` narrows them) that the daemon knows, as
/// targets for stop/delete. Apps it does not know are noted; none known is
/// an error.
pub(super) async fn existing_apps(
    client: &mut Client,
    path: &str,
    only: &[String],
) -> anyhow::Result<Vec<Target>> {
    let loaded = load(path, None, only, false)?;
    let known = client
        .list_processes(ListProcessesRequest {})
        .await
        .rpc()?
        .processes;
    let (present, missing): (Vec<&AppSpec>, Vec<&AppSpec>) = loaded
        .specs
        .iter()
        .partition(|spec| known.iter().any(|p| p.name == spec.name));
    if present.is_empty() {
        let names: Vec<&str> = missing.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "none of the apps of {path} exist ({}); nothing to do",
            names.join(", ")
        );
    }
    for spec in missing {
        note(&format!(
            "{path}: no app named {} exists; skipped",
            spec.name
        ));
    }
    Ok(dependents_first(&present)
        .into_iter()
        .map(|spec| Target::Name(spec.name.clone()))
        .collect())
}

/// `specs` ordered so that every app comes before the apps it depends on
/// (among `specs`): the order to stop or delete them in, as `pmd stop all`
/// does. File order otherwise. The loader has refused cycles.
fn dependents_first<'a>(specs: &[&'a AppSpec]) -> Vec<&'a AppSpec> {
    fn visit<'a>(
        spec: &'a AppSpec,
        specs: &[&'a AppSpec],
        seen: &mut Vec<&'a str>,
        out: &mut Vec<&'a AppSpec>,
    ) {
        if seen.contains(&spec.name.as_str()) {
            return;
        }
        seen.push(&spec.name);
        for dep in &spec.depends_on {
            if let Some(d) = specs.iter().find(|s| s.name == dep.app) {
                visit(d, specs, seen, out);
            }
        }
        out.push(spec); // after its dependencies
    }
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    for spec in specs {
        visit(spec, specs, &mut seen, &mut out);
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_come_before_their_dependencies() {
        let spec = |name: &str, deps: &[&str]| AppSpec {
            name: name.into(),
            depends_on: deps
                .iter()
                .map(|d| pmdaemon_proto::v1::Dependency {
                    app: (*d).into(),
                    condition: 0,
                })
                .collect(),
            ..Default::default()
        };
        // File order: the dependency first, as people write them.
        let (base, mid, top, lone) = (
            spec("base", &[]),
            spec("mid", &["base"]),
            spec("top", &["mid", "elsewhere"]),
            spec("lone", &[]),
        );
        let order: Vec<&str> = dependents_first(&[&base, &mid, &top, &lone])
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let at = |n| order.iter().position(|o| *o == n).unwrap();
        assert!(at("top") < at("mid") && at("mid") < at("base"), "{order:?}");
        assert_eq!(order.len(), 4);
    }
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn start_args(args: &[&str]) -> StartArgs {
        let cli = Cli::try_parse_from(std::iter::once("pmd").chain(args.iter().copied())).unwrap();
        match cli.command {
            Command::Start(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    fn usage_error(result: anyhow::Result<impl std::fmt::Debug>) -> String {
        let err = result.unwrap_err();
        assert!(err.is::<UsageError>(), "not a usage error: {err}");
        err.to_string()
    }

    /// With a FILE, `--env NAME` selects; `--env K=V`, app flags and
    /// arguments are usage errors that say why.
    #[test]
    fn start_file_flags() {
        let env = |args: &[&str]| start_environment(&start_args(args)).map(|e| e.map(String::from));
        assert_eq!(env(&["start", "e.yaml"]).unwrap(), None);
        assert_eq!(
            env(&["start", "e.yaml", "--env", "production", "--only", "api"]).unwrap(),
            Some("production".into())
        );
        let err = usage_error(env(&["start", "e.yaml", "--env", "A=1"]));
        assert!(
            err.contains("--env K=V sets a variable of a single app"),
            "{err}"
        );
        let err = usage_error(env(&["start", "e.yaml", "--name", "x"]));
        assert!(err.contains("describe a single app"), "{err}");
        let err = usage_error(env(&["start", "e.yaml", "-i", "2"]));
        assert!(err.contains("describe a single app"), "{err}");
        let err = usage_error(env(&["start", "e.yaml", "--", "arg"]));
        assert!(err.contains("arguments after --"), "{err}");
        let err = usage_error(env(&["start", "e.yaml", "--env", "a", "--env", "b"]));
        assert!(err.contains("give one environment"), "{err}");
    }

    /// A FILE must be alone; --only and --env NAME need one.
    #[test]
    fn file_targets_stand_alone() {
        use pmdaemon_proto::Target;
        let file = TargetArg::File("e.yaml".into());
        let api = TargetArg::Target(Target::Name("api".into()));
        assert_eq!(
            file_target(std::slice::from_ref(&file), &[], None).unwrap(),
            Some("e.yaml")
        );
        assert_eq!(
            file_target(std::slice::from_ref(&api), &[], None).unwrap(),
            None
        );
        let err = usage_error(file_target(&[api.clone(), file], &[], None));
        assert!(err.contains("only TARGET"), "{err}");
        let err = usage_error(file_target(std::slice::from_ref(&api), &["a".into()], None));
        assert!(
            err.starts_with("--only selects apps of an ecosystem file"),
            "{err}"
        );
        let err = usage_error(file_target(&[api], &[], Some("production")));
        assert!(
            err.starts_with("--env production selects the env_production section"),
            "{err}"
        );
    }
}
