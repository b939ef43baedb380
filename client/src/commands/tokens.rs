//! `pmd token create|list|revoke`: the bearer tokens of the daemon's TCP
//! listener, managed over the local socket only (the daemon refuses these
//! RPCs on TCP). `create` prints the secret, and nothing else, on stdout.

use pmdaemon_proto::v1::{
    CreateTokenRequest, ListTokensRequest, RevokeTokenRequest, TokenInfo, TokenScope,
};

use super::{Ctx, RpcResultExt};
use crate::cli::{OutputFormat, TokenCommand};
use crate::term;

pub async fn token(ctx: &Ctx, cmd: TokenCommand) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    match cmd {
        TokenCommand::Create {
            name,
            read_only,
            expires,
        } => {
            let made = client
                .create_token(CreateTokenRequest {
                    name,
                    read_only,
                    expires_in_ms: expires
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                        .unwrap_or(0),
                })
                .await
                .rpc()?;
            term::print(&format!("{}\n", made.secret))?;
            if let Some(info) = made.info {
                eprintln!(
                    "[pmd] token {:?} ({}) created; its secret is shown only this once",
                    info.name,
                    scope(&info)
                );
            }
        }
        TokenCommand::List { output } => {
            let tokens = client.list_tokens(ListTokensRequest {}).await.rpc()?.tokens;
            let text = match output {
                OutputFormat::Table => table(&tokens),
                OutputFormat::Json => {
                    format!("{}\n", serde_json::to_string_pretty(&json(&tokens))?)
                }
                OutputFormat::Yaml => serde_yaml::to_string(&json(&tokens))?,
            };
            term::print(&text)?;
        }
        TokenCommand::Revoke { name } => {
            client
                .revoke_token(RevokeTokenRequest { name: name.clone() })
                .await
                .rpc()?;
            term::print(&format!("token {name:?} revoked\n"))?;
        }
    }
    Ok(())
}

fn scope(t: &TokenInfo) -> &'static str {
    match TokenScope::try_from(t.scope) {
        Ok(TokenScope::Admin) => "admin",
        Ok(TokenScope::ReadOnly) => "read-only",
        _ => "?",
    }
}

fn time(ms: i64) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn table(tokens: &[TokenInfo]) -> String {
    let mut rows = vec![[
        "name".to_string(),
        "scope".to_string(),
        "created".to_string(),
        "expires".to_string(),
        "last used".to_string(),
    ]];
    for t in tokens {
        rows.push([
            t.name.clone(),
            scope(t).to_string(),
            time(t.created_at_ms),
            if t.expires_at_ms == 0 {
                "never".to_string()
            } else {
                time(t.expires_at_ms)
            },
            time(t.last_used_at_ms),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn json(tokens: &[TokenInfo]) -> serde_json::Value {
    tokens
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "scope": scope(t),
                "created_at_ms": t.created_at_ms,
                "expires_at_ms": (t.expires_at_ms != 0).then_some(t.expires_at_ms),
                "last_used_at_ms": (t.last_used_at_ms != 0).then_some(t.last_used_at_ms),
            })
        })
        .collect()
}
