//! `pmd context add|use|list|remove`: the contexts file
//! ([`crate::contexts`]). No daemon is contacted. `add` takes the global
//! remote flags (`--host`, `--token-file`, `--ca-cert`, `--client-cert`,
//! `--client-key`), reads their files as a connection would (so a
//! context that cannot work is refused now, not at its first use), and
//! stores the paths made absolute; the token stays in its file.

use std::path::{Path, PathBuf};

use crate::UsageError;
use crate::cli::{ContextCommand, OutputFormat, RemoteArgs};
use crate::contexts::{AbsPath, Context, ContextName, Contexts, LOCAL};
use crate::remote::{Named, Origin, Plan, TokenFrom};
use crate::term::{self, Colours, Style};

pub fn context(cmd: ContextCommand, flags: &RemoteArgs, colours: Colours) -> anyhow::Result<()> {
    let path = Contexts::default_path().map_err(|e| UsageError(e.to_string()))?;
    let load = || Contexts::load(&path).map_err(|e| UsageError(e.to_string()));
    let given = flags.given();
    match cmd {
        ContextCommand::Add { name } => add(&path, load()?, &name, flags),
        _ if !given.is_empty() => Err(UsageError(format!(
            "{} only go with `pmd context add NAME`",
            given.join(", ")
        ))
        .into()),
        ContextCommand::Use { name } => use_context(&path, load()?, &name),
        ContextCommand::List { output } => list(&path, &load()?, output, colours),
        ContextCommand::Remove { name } => remove(&path, load()?, &name),
    }
}

fn add(path: &Path, mut contexts: Contexts, name: &str, flags: &RemoteArgs) -> anyhow::Result<()> {
    let name = ContextName::new(name).map_err(UsageError)?;
    if flags.context.is_some() {
        return Err(UsageError(
            "--context picks a context to use; `pmd context add` makes one".into(),
        )
        .into());
    }
    let Some(url) = flags.host.clone() else {
        return Err(UsageError(format!(
            "pmd context add {name} needs --host URL (https://HOST:PORT), and usually \
             --token-file FILE"
        ))
        .into());
    };
    if let Some(existing) = contexts.contexts.get(&name) {
        return Err(UsageError(format!(
            "a context named {name} exists ({}): `pmd context remove {name}` first",
            existing.host
        ))
        .into());
    }
    let absolute = |flag: &str, p: &Option<PathBuf>| -> anyhow::Result<Option<AbsPath>> {
        p.as_ref()
            .map(|p| {
                let abs = std::path::absolute(p)
                    .map_err(|e| UsageError(format!("{flag}: {}: {e}", p.display())))?;
                AbsPath::new(abs).map_err(|e| UsageError(format!("{flag}: {e}")).into())
            })
            .transpose()
    };
    let context = Context {
        host: url,
        token_file: absolute("--token-file", &flags.token_file)?,
        ca_cert: absolute("--ca-cert", &flags.ca_cert)?,
        client_cert: absolute("--client-cert", &flags.client_cert)?,
        client_key: absolute("--client-key", &flags.client_key)?,
    };
    // Read every file now, as a connection would: a bad one is said today.
    let named = |flag: &str, p: &Option<AbsPath>| {
        p.as_ref().map(|p| Named {
            path: p.path().to_path_buf(),
            via: flag.to_string(),
        })
    };
    let plan = Plan {
        url: context.host.clone(),
        origin: Origin::Context {
            name: name.to_string(),
            current: false,
        },
        token: named("--token-file", &context.token_file).map(|n| TokenFrom::File {
            path: n.path,
            via: n.via,
        }),
        ca_cert: named("--ca-cert", &context.ca_cert),
        identity: named("--client-cert", &context.client_cert)
            .zip(named("--client-key", &context.client_key)),
    };
    if context.host.scheme == crate::remote::url::Scheme::Http
        && (plan.ca_cert.is_some() || plan.identity.is_some())
    {
        return Err(UsageError(format!(
            "{} is plain HTTP, so certificates have no use: give https://{} for TLS",
            context.host,
            context.host.authority()
        ))
        .into());
    }
    plan.load()?;
    let host = context.host.to_string();
    let without_token = context.token_file.is_none();
    contexts.contexts.insert(name.clone(), context);
    contexts.save(path)?;
    let mut text = format!("context {name} added: {host}\n");
    if contexts.current.as_ref() != Some(&name) {
        text += &format!("`pmd context use {name}` makes it the current one\n");
    }
    term::print(&text)?;
    if without_token {
        eprintln!(
            "[pmd] note: context {name} has no token file; its daemon refuses calls without one \
             unless PMD_TOKEN is set"
        );
    }
    Ok(())
}

fn use_context(path: &Path, mut contexts: Contexts, name: &str) -> anyhow::Result<()> {
    let text = if name == LOCAL {
        contexts.current = None;
        "using this machine's daemon (context local)\n".to_string()
    } else {
        let host = contexts
            .get(name, path)
            .map_err(UsageError)?
            .host
            .to_string();
        contexts.current = Some(ContextName::new(name).map_err(UsageError)?);
        format!("using context {name}: {host}\n")
    };
    contexts.save(path)?;
    term::print(&text)?;
    if std::env::var_os(crate::remote::HOST_ENV).is_some()
        || std::env::var_os(crate::remote::CONTEXT_ENV).is_some()
    {
        eprintln!(
            "[pmd] note: {} or {} is set in this shell and comes before the current context",
            crate::remote::HOST_ENV,
            crate::remote::CONTEXT_ENV
        );
    }
    Ok(())
}

fn remove(path: &Path, mut contexts: Contexts, name: &str) -> anyhow::Result<()> {
    contexts.get(name, path).map_err(UsageError)?;
    let name = ContextName::new(name).map_err(UsageError)?;
    contexts.contexts.remove(&name);
    let was_current = contexts.current.as_ref() == Some(&name);
    if was_current {
        contexts.current = None;
    }
    contexts.save(path)?;
    let mut text = format!("context {name} removed\n");
    if was_current {
        text += "it was the current one: pmd now drives this machine's daemon (context local)\n";
    }
    term::print(&text)?;
    Ok(())
}

/// One row of `pmd context list`.
#[derive(serde::Serialize)]
struct Row {
    name: String,
    current: bool,
    host: Option<String>,
    token_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

fn rows(contexts: &Contexts) -> Vec<Row> {
    let path = |p: &Option<AbsPath>| p.as_ref().map(|p| p.path().to_path_buf());
    let mut rows = vec![Row {
        name: LOCAL.to_string(),
        current: contexts.current.is_none(),
        host: None,
        token_file: None,
        ca_cert: None,
        client_cert: None,
        client_key: None,
    }];
    rows.extend(contexts.contexts.iter().map(|(name, c)| Row {
        name: name.to_string(),
        current: contexts.current.as_ref() == Some(name),
        host: Some(c.host.to_string()),
        token_file: path(&c.token_file),
        ca_cert: path(&c.ca_cert),
        client_cert: path(&c.client_cert),
        client_key: path(&c.client_key),
    }));
    rows
}

fn list(
    path: &Path,
    contexts: &Contexts,
    output: OutputFormat,
    colours: Colours,
) -> anyhow::Result<()> {
    let rows = rows(contexts);
    let text = match output {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&rows)?),
        OutputFormat::Yaml => serde_yaml::to_string(&rows)?,
        OutputFormat::Table => table(path, &rows, colours),
    };
    term::print(&text)?;
    Ok(())
}

fn table(path: &Path, rows: &[Row], colours: Colours) -> String {
    let shown = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or_else(|| "-".to_string(), |p| p.display().to_string())
    };
    let mut cells = vec![[
        String::new(),
        "name".to_string(),
        "host".to_string(),
        "token file".to_string(),
        "ca cert".to_string(),
    ]];
    for row in rows {
        cells.push([
            if row.current { "*" } else { "" }.to_string(),
            row.name.clone(),
            row.host
                .clone()
                .unwrap_or_else(|| "this machine's socket".to_string()),
            shown(&row.token_file),
            shown(&row.ca_cert),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let line = line.join("  ").trim_end().to_string();
        let line = if n == 0 {
            colours.paint(&line, Style::Dim).into_owned()
        } else {
            line
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&colours.paint(&format!("(from {})", path.display()), Style::Dim));
    out.push('\n');
    out
}
