//! The HTTP gateway: REST, NDJSON and WebSocket routes generated from the
//! `google.api.http` annotations of `pmdaemon_proto::API_DESCRIPTOR_SET`,
//! and `GET /v1/openapi.json` describing them. It owns no handler per RPC:
//! one transcoder turns each HTTP request into an in-process gRPC call on
//! the authorized gRPC service it is given ([`Grpc`]), with every extension
//! of the HTTP request (the caller's Scope, set by the authentication
//! layer) copied onto it, so the one authorization layer decides for REST
//! exactly as for gRPC. The gateway never looks at tokens.
//!
//! The descriptor pool is decoded only when [`router`] is called, i.e. when
//! a TCP listener runs; a daemon without one never pays for it.
//!
//! - `rules` — the routes read from the descriptor (ACCESS_LOCAL_ONLY
//!   methods left out);
//! - `template` — path templates (`/v1/processes/{target}:stop`);
//! - `transcode` — body, path and query → request message;
//! - `call` — the in-process gRPC call and its reply frames;
//! - `respond` — replies and statuses → JSON, NDJSON, WebSocket;
//! - `openapi` — the OpenAPI 3 document of the same routes.
//!
//! Used by the TCP listener (`serve/`), which merges [`router`] into the
//! router it serves behind its authentication layer.

mod call;
mod openapi;
mod respond;
mod rules;
mod template;
mod transcode;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, WebSocketUpgrade};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use prost_reflect::DescriptorPool;
use tonic::Status;

use rules::Route;

/// The authorized gRPC service the gateway calls in-process.
pub use crate::serve::tcp::Grpc;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// Largest request body read (tonic's default message limit): a REST body
/// is one request message.
const MAX_BODY: usize = 4 << 20;

/// Why the gateway's routes cannot be built from the descriptor.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot decode the API descriptor set: {0}")]
    Descriptor(#[from] prost_reflect::DescriptorError),
    #[error("the API descriptor set does not declare google.api.http")]
    NoHttpOption,
    #[error("{0}: client-streaming RPCs cannot be served over REST")]
    ClientStreaming(String),
    #[error("HTTP rule of {method}: {why}")]
    Rule { method: String, why: String },
    #[error("path template {template}: {why}")]
    Template { template: String, why: String },
}

struct Gateway {
    grpc: Grpc,
    routes: Vec<Route>,
}

/// Every `google.api.http` route of the contract (except the methods
/// declared ACCESS_LOCAL_ONLY) and `GET /v1/openapi.json`, each forwarding
/// to `grpc`.
pub fn router(grpc: Grpc) -> Result<Router, GatewayError> {
    let pool = DescriptorPool::decode(pmdaemon_proto::API_DESCRIPTOR_SET)?;
    let routes = rules::routes(&pool)?;
    let document = Bytes::from(openapi::document(&routes).to_string());
    // Rules that share an axum path (`/v1/processes/{target}` and
    // `/v1/processes/{target}:stop`) share one handler, which tells them
    // apart by method and verb.
    let mut by_path: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, route) in routes.iter().enumerate() {
        by_path
            .entry(route.template.axum_path())
            .or_default()
            .push(i);
    }
    let gateway = Arc::new(Gateway { grpc, routes });
    let mut router = Router::new();
    for (path, candidates) in by_path {
        let gateway = gateway.clone();
        let candidates: Arc<[usize]> = candidates.into();
        router = router.route(
            &path,
            any(move |request: Request| dispatch(gateway.clone(), candidates.clone(), request)),
        );
    }
    Ok(router.route(
        OPENAPI_PATH,
        get(move || async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                document.clone(),
            )
        }),
    ))
}

fn is_websocket(request: &Request) -> bool {
    request.method() == Method::GET
        && request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Picks the rule for `request` among those registered at its axum path,
/// builds the request message and answers as the rule's kind asks.
async fn dispatch(gateway: Arc<Gateway>, candidates: Arc<[usize]>, request: Request) -> Response {
    let websocket = is_websocket(&request);
    let path = request.uri().path().to_string();
    let matching: Vec<(&Route, Vec<(String, String)>)> = candidates
        .iter()
        .map(|&i| &gateway.routes[i])
        .filter_map(|r| r.template.matches(&path).map(|vars| (r, vars)))
        .collect();
    if matching.is_empty() {
        return respond::error(&Status::not_found(format!("no route for {path}")));
    }
    // A verb makes a rule more specific than a bare variable that would
    // swallow `name:verb` whole. A WebSocket handshake is always a GET: it
    // takes the most specific rules of the path (`{target}:reload` rather
    // than GET `{target}` with target `x:reload`), their GET rule, else
    // their only rule (`:reload`, `:waitReady`).
    let by_method = matching
        .iter()
        .filter(|(r, _)| r.http_method == request.method())
        .max_by_key(|(r, _)| r.template.has_verb());
    let chosen = if websocket {
        let verb = matching.iter().any(|(r, _)| r.template.has_verb());
        let specific: Vec<_> = matching
            .iter()
            .filter(|(r, _)| r.template.has_verb() == verb)
            .collect();
        match specific.iter().find(|(r, _)| r.http_method == Method::GET) {
            Some(found) => Some(*found),
            None if specific.len() == 1 => Some(specific[0]),
            None => None,
        }
    } else {
        by_method
    };
    let Some((route, vars)) = chosen else {
        let allow: Vec<&str> = matching
            .iter()
            .map(|(r, _)| r.http_method.as_str())
            .collect();
        let mut response = respond::error(&Status::unimplemented(format!(
            "{} is not a method of {path}",
            request.method()
        )));
        *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
        if let Ok(allow) = HeaderValue::from_str(&allow.join(", ")) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        return response;
    };
    let (route, vars) = (Route::clone(route), vars.clone());
    let grpc = gateway.grpc.clone();
    if websocket {
        return upgrade(grpc, route, vars, request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            return respond::error(&Status::invalid_argument(format!(
                "cannot read the request body (at most {MAX_BODY} bytes): {e}"
            )));
        }
    };
    let input = transcode::Input {
        vars,
        query: parts.uri.query(),
        body: &body,
        websocket: false,
    };
    let message = match transcode::request_message(&route, input) {
        Ok(message) => message,
        Err(status) => return respond::error(&status),
    };
    let output = route.method.output();
    match call::call(grpc, &route.grpc_path, &message, output, parts.extensions).await {
        Ok(replies) if route.streaming() => respond::ndjson(replies),
        Ok(replies) => respond::unary(replies).await,
        // A stream that fails before its first message is answered with
        // the error's HTTP status, as a unary call is.
        Err(status) => respond::error(&status),
    }
}

/// A WebSocket on a route: the request message from the path and the
/// query; after the handshake, the call and its replies, one text message
/// each.
async fn upgrade(
    grpc: Grpc,
    route: Route,
    vars: Vec<(String, String)>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let input = transcode::Input {
        vars,
        query: parts.uri.query(),
        body: &[],
        websocket: true,
    };
    let message = transcode::request_message(&route, input);
    let extensions = parts.extensions;
    // Browsers cannot set an Authorization header and may offer the token
    // as a subprotocol; the handshake must then name one they offered
    // that is not the secret.
    upgrade
        .protocols(["bearer", "pmdaemon.v1"])
        .on_upgrade(move |mut socket| async move {
            let message = match message {
                Ok(message) => message,
                Err(status) => return respond::ws_error(&mut socket, &status).await,
            };
            let output = route.method.output();
            match call::call(grpc, &route.grpc_path, &message, output, extensions).await {
                Ok(replies) => respond::ws_stream(socket, replies).await,
                Err(status) => respond::ws_error(&mut socket, &status).await,
            }
        })
}
