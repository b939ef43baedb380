//! gRPC replies → HTTP answers: a unary reply as one proto3 JSON object,
//! a server stream as NDJSON (`{"result": ...}` per message,
//! `{"error": ...}` last on failure, grpc-gateway's format) or as WebSocket
//! text messages ending in a close frame, and a status as grpc-gateway's
//! error body with the HTTP status of its code.
//!
//! JSON is proto3 canonical (lowerCamelCase, enums by name, 64-bit integers
//! as strings) and, as grpc-gateway's default marshaler does
//! (EmitUnpopulated), fields at their default value are written too, so a
//! client sees `"restarts": 0` rather than a missing key. Fields with
//! presence (`optional` scalars, messages, oneof members) that are unset are
//! left out rather than written as `null`: absent means unset.

use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost_reflect::{DynamicMessage, SerializeOptions};
use tonic::{Code, Status};

use super::call::Replies;

/// WebSocket close reasons are at most 123 bytes (RFC 6455, 5.5).
const MAX_CLOSE_REASON: usize = 123;

pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's error body, its fields in its order.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    code: i32,
    message: &'a str,
    details: [(); 0],
}

fn status_json(status: &Status) -> String {
    let body = ErrorBody {
        code: status.code() as i32,
        message: status.message(),
        details: [],
    };
    serde_json::to_string(&body).expect("plain strings and numbers")
}

pub(crate) fn error(status: &Status) -> Response {
    error_as(http_status(status.code()), status)
}

/// The error body of `status` with an HTTP status of the gateway's own
/// (405, 413, 415), not the one of its gRPC code.
pub(crate) fn error_as(http: StatusCode, status: &Status) -> Response {
    let mut response = (
        http,
        [(header::CONTENT_TYPE, "application/json")],
        status_json(status),
    )
        .into_response();
    if status.code() == Code::Unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
    }
    response
}

fn to_json(message: &DynamicMessage) -> Vec<u8> {
    let mut out = serde_json::Serializer::new(Vec::new());
    // Serializing a decoded message into a Vec cannot fail.
    let _ = message.serialize_with_options(
        &mut out,
        &SerializeOptions::new().skip_default_fields(false),
    );
    out.into_inner()
}

fn line(key: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + key.len() + 7);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n");
    out.into()
}

/// A unary call: its one reply, or its error.
pub(crate) async fn unary(mut replies: Replies) -> Response {
    let first = match replies.next().await {
        Some(Ok(message)) => message,
        Some(Err(status)) => return error(&status),
        None => return error(&Status::internal("unary call ended without a reply")),
    };
    // The status comes after the message, in the trailers.
    if let Some(Err(status)) = replies.next().await {
        return error(&status);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        to_json(&first),
    )
        .into_response()
}

/// A server stream as NDJSON, each line written when its message arrives.
/// The body is pulled by hyper as the connection drains, so a slow reader
/// holds at most one message here.
pub(crate) fn ndjson(replies: Replies) -> Response {
    let lines = futures_util::stream::unfold(Some(replies), |replies| async move {
        let mut replies = replies?;
        match replies.next().await? {
            Ok(message) => Some((
                Ok::<_, std::convert::Infallible>(line("result", &to_json(&message))),
                Some(replies),
            )),
            Err(status) => Some((Ok(line("error", status_json(&status).as_bytes())), None)),
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// The head of an NDJSON stream, without its body (a HEAD request). The
/// body is of unknown length, as the GET's is (not `Content-Length: 0`);
/// hyper sends no body to a HEAD anyway.
pub(crate) fn ndjson_head() -> Response {
    let nothing = futures_util::stream::empty::<Result<Bytes, std::convert::Infallible>>();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(nothing),
    )
        .into_response()
}

fn close_reason(message: &str) -> String {
    let mut end = message.len().min(MAX_CLOSE_REASON);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

/// Ends a WebSocket after a failed call: the error as a last JSON message
/// (the whole message; the close reason is cut to 123 bytes), then a close
/// frame: 1008 (policy) when the caller may not make the call, else 1011.
pub(crate) async fn ws_error(socket: &mut WebSocket, status: &Status) {
    let body = line("error", status_json(status).as_bytes());
    let body = String::from_utf8_lossy(body.trim_ascii_end()).into_owned();
    let _ = socket.send(Message::Text(body.into())).await;
    let code = match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => close_code::POLICY,
        _ => close_code::ERROR,
    };
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: close_reason(status.message()).into(),
        })))
        .await;
}

/// Sends each reply as one text message as it arrives, then closes (1000
/// at a normal end). A send waits for the socket, so a slow reader slows
/// only its own call; a reader that goes away ends the call at once, even
/// while the stream is quiet.
pub(crate) async fn ws_stream(mut socket: WebSocket, mut replies: Replies) {
    loop {
        let next = tokio::select! {
            next = replies.next() => next,
            incoming = socket.recv() => match incoming {
                // Pings are answered by the socket itself; data from the
                // client means nothing to a server stream.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        match next {
            Some(Ok(message)) => {
                let text = String::from_utf8(to_json(&message)).expect("serde_json writes UTF-8");
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            Some(Err(status)) => return ws_error(&mut socket, &status).await,
            None => {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: close_code::NORMAL,
                        reason: "".into(),
                    })))
                    .await;
                return;
            }
        }
    }
}
