//! The HTTP gateway: REST, NDJSON and WebSocket routes generated from the
//! `google.api.http` annotations of `pmdaemon_proto::API_DESCRIPTOR_SET`,
//! and `GET /v1/openapi.json` describing them. It owns no handler per RPC:
//! one transcoder turns each HTTP request into an in-process gRPC call on
//! the authorized gRPC service it is given ([`Grpc`]), with every extension
//! of the HTTP request (the caller's Scope, set by the authentication
//! layer) copied onto it, so the one authorization layer decides for REST
//! exactly as for gRPC. The gateway never looks at tokens.
//!
//! HTTP, as RFC 9110 and grpc-gateway have it: HEAD is GET without the body
//! (a stream's HEAD answers its head and calls nothing, after the checks
//! its GET would make: the query, and the caller's Scope by the
//! authorization layer's own rule); a method a path does not take is 405
//! with `Allow`; a rule with a `:verb` owns its path over a bare variable
//! that would swallow `name:verb`; a body over the listener's
//! `limits.max_body_bytes` is 413, one that is not JSON (by its
//! Content-Type; form-urlencoded is read as JSON, as grpc-gateway does) 415.
//! A WebSocket is an HTTP/1.1 upgrade or an HTTP/2 extended CONNECT.
//!
//! The descriptor pool is decoded only when [`router`] is called, i.e. when
//! a TCP listener runs; a daemon without one never pays for it. The OpenAPI
//! document is rendered by its first request and kept: most listeners are
//! never asked for it.
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
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, WebSocketUpgrade};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use prost_reflect::DescriptorPool;
use tonic::Status;

use rules::Route;

/// The authorized gRPC service the gateway calls in-process.
pub use crate::serve::tcp::Grpc;
use crate::serve::tcp::Limits;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

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
    /// `GET /v1/openapi.json`'s body, rendered from `routes` by its first
    /// request.
    openapi: OnceLock<Bytes>,
}

/// Every `google.api.http` route of the contract (except the methods
/// declared ACCESS_LOCAL_ONLY) and `GET /v1/openapi.json`, each forwarding
/// to `grpc`.
pub fn router(grpc: Grpc) -> Result<Router, GatewayError> {
    let pool = DescriptorPool::decode(pmdaemon_proto::API_DESCRIPTOR_SET)?;
    let routes = rules::routes(&pool)?;
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
    let gateway = Arc::new(Gateway {
        grpc,
        routes,
        openapi: OnceLock::new(),
    });
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
            let document = gateway
                .openapi
                .get_or_init(|| Bytes::from(openapi::document(&gateway.routes).to_string()));
            (
                [(header::CONTENT_TYPE, "application/json")],
                document.clone(),
            )
        }),
    ))
}

/// A WebSocket handshake: HTTP/1.1 `GET` with `Upgrade: websocket`, or
/// HTTP/2 extended CONNECT with `:protocol websocket` (RFC 8441).
fn is_websocket(request: &Request) -> bool {
    match *request.method() {
        Method::GET => request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        Method::CONNECT => request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket")),
        _ => false,
    }
}

/// The rules at `path` among `candidates`, with their variables. A rule
/// with a verb (`{target}:restart`) is more specific than a bare variable
/// that would swallow `api:restart` whole: when a verb rule matches, the
/// rules without a verb are left out, whatever the method, so
/// `GET /v1/processes/api:restart` is a 405 (the path is RestartProcess's),
/// not GetProcess of a target `api:restart`.
fn matching<'a>(
    gateway: &'a Gateway,
    candidates: &[usize],
    path: &str,
) -> Vec<(&'a Route, Vec<(String, String)>)> {
    let mut matching: Vec<(&Route, Vec<(String, String)>)> = candidates
        .iter()
        .map(|&i| &gateway.routes[i])
        .filter_map(|r| r.template.matches(path).map(|vars| (r, vars)))
        .collect();
    if matching.iter().any(|(r, _)| r.template.has_verb()) {
        matching.retain(|(r, _)| r.template.has_verb());
    }
    matching
}

/// 405 with `Allow`: the methods of the rules at this path (HEAD with GET,
/// RFC 9110 9.3.2), and the JSON error body (UNIMPLEMENTED, as
/// grpc-gateway answers a method it has no handler for).
fn method_not_allowed(method: &Method, path: &str, rules: &[&Route]) -> Response {
    const ORDER: [Method; 6] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let mut allowed: Vec<Method> = rules.iter().map(|r| r.http_method.clone()).collect();
    if allowed.contains(&Method::GET) {
        allowed.push(Method::HEAD);
    }
    allowed.sort_by_key(|m| ORDER.iter().position(|o| o == m).unwrap_or(ORDER.len()));
    allowed.dedup();
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let status = Status::unimplemented(format!(
        "{method} is not a method of {path}: it takes {allow}"
    ));
    let mut response = respond::error_as(StatusCode::METHOD_NOT_ALLOWED, &status);
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// Whether a body of this `Content-Type` is read as JSON: JSON itself
/// (`application/json`, any `+json`, with parameters), and
/// `application/x-www-form-urlencoded`, which `curl -d` sends unless told
/// otherwise and grpc-gateway reads as JSON too.
fn is_json_content_type(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind == "application"
        && (subtype == "json" || subtype.ends_with("+json") || subtype == "x-www-form-urlencoded")
}

/// Whether `error` (reading a body) is the listener's size limit.
fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

fn too_large(limit: u64) -> Response {
    respond::error_as(
        StatusCode::PAYLOAD_TOO_LARGE,
        &Status::invalid_argument(format!(
            "the request body is larger than {limit} bytes (limits.max_body_bytes in config.yaml)"
        )),
    )
}

/// Picks the rule for `request` among those registered at its axum path,
/// builds the request message and answers as the rule's kind asks.
async fn dispatch(gateway: Arc<Gateway>, candidates: Arc<[usize]>, request: Request) -> Response {
    let websocket = is_websocket(&request);
    let head = request.method() == Method::HEAD;
    let path = request.uri().path().to_string();
    let matching = matching(&gateway, &candidates, &path);
    if matching.is_empty() {
        return respond::error(&Status::not_found(format!("no route for {path}")));
    }
    // A WebSocket handshake (GET, or CONNECT over HTTP/2) takes the path's
    // GET rule, else its only rule (`:reload`, `:waitReady`). HEAD is GET
    // without the body (RFC 9110 9.3.2).
    let chosen = if websocket {
        matching
            .iter()
            .find(|(r, _)| r.http_method == Method::GET)
            .or_else(|| (matching.len() == 1).then(|| &matching[0]))
    } else {
        let wanted = if head { &Method::GET } else { request.method() };
        matching.iter().find(|(r, _)| r.http_method == *wanted)
    };
    let Some((route, vars)) = chosen else {
        let rules: Vec<&Route> = matching.iter().map(|(r, _)| *r).collect();
        return method_not_allowed(request.method(), &path, &rules);
    };
    let (route, vars) = (Route::clone(route), vars.clone());
    drop(matching);
    let grpc = gateway.grpc.clone();
    if websocket {
        return upgrade(grpc, route, vars, request).await;
    }
    let (parts, body) = request.into_parts();
    if head && route.streaming() {
        return head_of_stream(&route, vars, &parts);
    }
    let limit = parts
        .extensions
        .get::<Limits>()
        .copied()
        .unwrap_or_default()
        .max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large(limit);
    }
    let body = match axum::body::to_bytes(body, limit.try_into().unwrap_or(usize::MAX)).await {
        Ok(body) => body,
        Err(e) if is_too_large(&e) => return too_large(limit),
        Err(e) => {
            return respond::error(&Status::invalid_argument(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    if !body.is_empty()
        && let Some(content_type) = parts.headers.get(header::CONTENT_TYPE)
        && !is_json_content_type(content_type)
    {
        let shown = String::from_utf8_lossy(content_type.as_bytes()).into_owned();
        let mut response = respond::error_as(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Status::invalid_argument(format!(
                "a body of Content-Type {shown:?} is not read: send JSON (Content-Type: application/json)"
            )),
        );
        response
            .headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        return response;
    }
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
        // A HEAD of a unary GET makes the call: hyper sends the headers
        // (Content-Length included) and drops the body.
        Ok(replies) => respond::unary(replies).await,
        // A stream that fails before its first message is answered with
        // the error's HTTP status, as a unary call is.
        Err(status) => respond::error(&status),
    }
}

/// HEAD of a streaming GET: the headers its GET would start with, and no
/// call, so no stream is started for nobody to read. The request is still
/// checked as its GET would be (its query, the caller's scope by the
/// authorization layer's own rule); what only the call can tell (an
/// unknown target) is not.
fn head_of_stream(
    route: &Route,
    vars: Vec<(String, String)>,
    parts: &axum::http::request::Parts,
) -> Response {
    let input = transcode::Input {
        vars,
        query: parts.uri.query(),
        body: &[],
        websocket: false,
    };
    if let Err(status) = transcode::request_message(route, input) {
        return respond::error(&status);
    }
    let scope = parts.extensions.get::<crate::auth::token::Scope>().copied();
    if let Err(status) = crate::auth::layer::authorize(&route.grpc_path, scope) {
        return respond::error(&status);
    }
    respond::ndjson_head()
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
