//! The token RPCs (CreateToken, ListTokens, RevokeToken): local-only by
//! their `(pmdaemon.v1.access)` option, so the TCP listener refuses them
//! whatever the token. Converts and hands off to `auth::token`.

use std::time::Duration;

use pmdaemon_proto::v1;
use tonic::Status;

use crate::auth::token::{Scope, TokenError, TokenInfo, TokenStore};

fn status(e: TokenError) -> Status {
    let msg = e.to_string();
    match e {
        TokenError::InvalidName(_) => Status::invalid_argument(msg),
        TokenError::AlreadyExists(_) => Status::already_exists(msg),
        TokenError::NotFound(_) => Status::not_found(msg),
        _ => Status::internal(msg),
    }
}

fn info(t: TokenInfo) -> v1::TokenInfo {
    v1::TokenInfo {
        name: t.name,
        scope: match t.scope {
            Scope::Admin => v1::TokenScope::Admin,
            Scope::ReadOnly => v1::TokenScope::ReadOnly,
        } as i32,
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms,
        last_used_at_ms: t.last_used_at_ms,
    }
}

pub fn create(
    tokens: &TokenStore,
    req: v1::CreateTokenRequest,
) -> Result<v1::CreateTokenResponse, Status> {
    let expires_in = match req.expires_in_ms {
        0 => None,
        ms => Some(
            pmdaemon_proto::check_token_lifetime("expires_in_ms", Duration::from_millis(ms))
                .map_err(|e| Status::invalid_argument(e.0))?,
        ),
    };
    let scope = if req.read_only {
        Scope::ReadOnly
    } else {
        Scope::Admin
    };
    let (secret, made) = tokens
        .create(&req.name, scope, expires_in)
        .map_err(status)?;
    Ok(v1::CreateTokenResponse {
        secret: secret.expose().to_string(),
        info: Some(info(made)),
    })
}

pub fn list(tokens: &TokenStore) -> v1::ListTokensResponse {
    v1::ListTokensResponse {
        tokens: tokens.list().into_iter().map(info).collect(),
    }
}

pub fn revoke(
    tokens: &TokenStore,
    req: v1::RevokeTokenRequest,
) -> Result<v1::RevokeTokenResponse, Status> {
    let gone = tokens.revoke(&req.name).map_err(status)?;
    Ok(v1::RevokeTokenResponse {
        info: Some(info(gone)),
    })
}
