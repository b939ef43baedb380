//! The in-process gRPC call: frames the request message, hands it to the
//! authorized gRPC service with the HTTP request's extensions (the caller's
//! Scope among them, so the one authorization layer decides), and reads the
//! answer frame by frame as the service produces it. Nothing is read ahead
//! of the consumer: a slow HTTP or WebSocket reader slows the gRPC body,
//! whose streams already drop for laggards.

use axum::body::Bytes;
use axum::http::{self, Extensions, HeaderValue, Request, header};
use bytes::{Buf, BytesMut};
use http_body_util::{BodyExt, Full};
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Status;
use tower::ServiceExt;

use super::Grpc;

/// Largest reply message accepted (tonic's own default decode limit).
const MAX_MESSAGE: usize = 4 << 20;

/// Calls `path` with `message`; the replies, or the status of a call that
/// failed before any reply (a trailers-only answer).
pub(crate) async fn call(
    grpc: Grpc,
    path: &str,
    message: &DynamicMessage,
    output: MessageDescriptor,
    extensions: Extensions,
) -> Result<Replies, Status> {
    let encoded = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + encoded.len());
    frame.extend_from_slice(&[0]);
    frame.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    frame.extend_from_slice(&encoded);
    let mut request = Request::builder()
        .method(http::Method::POST)
        .version(http::Version::HTTP_2)
        .uri(path)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        )
        .header(header::TE, HeaderValue::from_static("trailers"))
        .body(tonic::body::Body::new(Full::new(frame.freeze())))
        .map_err(|e| Status::internal(format!("gateway request: {e}")))?;
    *request.extensions_mut() = extensions;
    let response = match grpc.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if let Some(status) = Status::from_header_map(response.headers()) {
        // Trailers-only: the call ended before any message.
        return match status.code() {
            tonic::Code::Ok => Ok(Replies::finished(output)),
            _ => Err(status),
        };
    }
    if response.status() != http::StatusCode::OK {
        return Err(Status::internal(format!(
            "gRPC service answered HTTP {}",
            response.status()
        )));
    }
    Ok(Replies {
        body: Some(response.into_body()),
        buf: BytesMut::new(),
        output,
    })
}

/// The reply messages of one call, in order, then its final status.
pub(crate) struct Replies {
    body: Option<tonic::body::Body>,
    buf: BytesMut,
    output: MessageDescriptor,
}

impl Replies {
    fn finished(output: MessageDescriptor) -> Self {
        Replies {
            body: None,
            buf: BytesMut::new(),
            output,
        }
    }

    /// The next reply; `Some(Err)` once if the call ends with an error
    /// status; None at a successful end (and after the error).
    pub(crate) async fn next(&mut self) -> Option<Result<DynamicMessage, Status>> {
        loop {
            if let Some(message) = self.take_message() {
                if message.is_err() {
                    self.body = None;
                }
                return Some(message);
            }
            let body = self.body.as_mut()?;
            match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(frame) => {
                        self.body = None;
                        let status = frame
                            .trailers_ref()
                            .and_then(Status::from_header_map)
                            .unwrap_or_else(|| Status::internal("gRPC trailers without a status"));
                        return (status.code() != tonic::Code::Ok).then_some(Err(status));
                    }
                },
                Some(Err(e)) => {
                    self.body = None;
                    return Some(Err(e));
                }
                None => {
                    self.body = None;
                    return Some(Err(Status::internal(
                        "gRPC response ended without a status",
                    )));
                }
            }
        }
    }

    /// A whole framed message from the buffer, if one is there.
    fn take_message(&mut self) -> Option<Result<DynamicMessage, Status>> {
        if self.buf.len() < 5 {
            return None;
        }
        let compressed = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if compressed != 0 {
            return Some(Err(Status::internal(
                "compressed gRPC reply (none was offered)",
            )));
        }
        if len > MAX_MESSAGE {
            return Some(Err(Status::resource_exhausted(format!(
                "reply of {len} bytes is larger than {MAX_MESSAGE}"
            ))));
        }
        if self.buf.len() < 5 + len {
            return None;
        }
        self.buf.advance(5);
        let payload: Bytes = self.buf.split_to(len).freeze();
        Some(
            DynamicMessage::decode(self.output.clone(), payload)
                .map_err(|e| Status::internal(format!("undecodable gRPC reply: {e}"))),
        )
    }
}
