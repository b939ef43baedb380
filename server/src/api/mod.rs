//! The tonic service `pmdaemon.v1.ProcessManager`. Each RPC converts its
//! request (validating it again: other clients than `pmd` exist), hands off
//! to the supervisor or the log hub, and converts the answer back. The error
//! mapping to gRPC codes lives here once ([`status`]). Which listener a call
//! came on ([`Transport`], a request extension) decides only one thing: a
//! remote caller's cwd and PATH are ignored, and its relative paths refused.
//!
//! Files: `convert.rs` (proto <-> core types), `processes.rs` (lifecycle
//! RPCs, scale, apply), `reload.rs` (rolling restart stream),
//! `wait_ready.rs` (WaitReady, the readiness wait stream), `logs.rs`
//! (StreamLogs/FlushLogs), `monitor.rs` (StreamMetrics, WatchEvents),
//! `daemon.rs` (ping, save,
//! resurrect, shutdown), `tokens.rs` (the local-only token RPCs).

pub(crate) mod convert;
mod daemon;
mod logs;
mod monitor;
mod processes;
mod reload;
mod tokens;
mod wait_ready;

use pmdaemon_proto::v1;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::serve::Transport;
use crate::supervisor::Supervisor;

pub use logs::LogStream;

/// The gRPC face of the daemon.
pub struct Api {
    sup: Supervisor,
    /// Set to true to begin daemon shutdown (the Shutdown RPC does). The
    /// daemon's run loop holds the receiving side.
    shutdown_tx: watch::Sender<bool>,
    started_at_ms: i64,
    /// Problems found at start-up, for Ping.
    notices: Vec<String>,
    /// True once every app is stopped at shutdown: log and event streams
    /// end then, so followers see the apps stop.
    served: watch::Receiver<bool>,
    /// The TCP listener's bearer tokens (the token RPCs).
    tokens: crate::auth::token::TokenStore,
    /// Where the daemon listens on TCP, for Ping.
    listen: Vec<String>,
}

impl Api {
    pub fn new(
        sup: Supervisor,
        shutdown_tx: watch::Sender<bool>,
        served: watch::Receiver<bool>,
        notices: Vec<String>,
        tokens: crate::auth::token::TokenStore,
        listen: Vec<String>,
    ) -> Self {
        Api {
            sup,
            shutdown_tx,
            started_at_ms: crate::supervisor::instance::now_ms(),
            notices,
            served,
            tokens,
            listen,
        }
    }
}

/// The one mapping from daemon errors to gRPC statuses.
pub fn status(e: Error) -> Status {
    // Bounded: a message over the peer's header limit would reach it as a
    // transport error instead of this one.
    let msg = pmdaemon_proto::wording::bounded(e.to_string());
    match e {
        Error::InvalidArgument(_) => Status::invalid_argument(msg),
        Error::NotFound { .. } => Status::not_found(msg),
        Error::AlreadyExists { .. } => Status::already_exists(msg),
        Error::FailedPrecondition(_) => Status::failed_precondition(msg),
        Error::ResourceExhausted(_) => Status::resource_exhausted(msg),
        Error::ShuttingDown => Status::unavailable(msg),
        Error::StateNotWritten { ref source, .. } if crate::store::is_out_of_space(source) => {
            Status::resource_exhausted(msg)
        }
        // Any other failed write (EIO, a read-only remount): INTERNAL, not
        // UNAVAILABLE. The daemon is there and answered; UNAVAILABLE means
        // "try again, it is transient" to gRPC clients (and "the daemon is
        // unavailable" to pmd), while the same call keeps failing until
        // someone fixes the file system.
        Error::StateNotWritten { .. } => Status::internal(msg),
        // A path the daemon refuses to open as given (a symbolic link at a
        // log path) is the caller's to fix.
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
            Status::invalid_argument(msg)
        }
        Error::Io { .. } => Status::internal(msg),
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        status(e)
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl v1::process_manager_server::ProcessManager for Api {
    async fn start_process(
        &self,
        req: Request<v1::StartProcessRequest>,
    ) -> Reply<v1::StartProcessResponse> {
        let transport = Transport::of(req.extensions());
        processes::start(&self.sup, req.into_inner(), transport)
            .await
            .map(Response::new)
    }

    async fn stop_process(
        &self,
        req: Request<v1::StopProcessRequest>,
    ) -> Reply<v1::StopProcessResponse> {
        processes::stop(&self.sup, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn restart_process(
        &self,
        req: Request<v1::RestartProcessRequest>,
    ) -> Reply<v1::RestartProcessResponse> {
        processes::restart(&self.sup, req.into_inner())
            .await
            .map(Response::new)
    }

    type ReloadProcessStream = reload::ReloadStream;

    async fn reload_process(
        &self,
        req: Request<v1::ReloadProcessRequest>,
    ) -> Reply<Self::ReloadProcessStream> {
        reload::reload(&self.sup, req.into_inner()).map(Response::new)
    }

    type WaitReadyStream = wait_ready::WaitReadyStream;

    async fn wait_ready(&self, req: Request<v1::WaitReadyRequest>) -> Reply<Self::WaitReadyStream> {
        let env_values = convert::EnvValues::of(req.extensions());
        wait_ready::wait_ready(&self.sup, req.into_inner(), env_values).map(Response::new)
    }

    async fn scale_process(
        &self,
        req: Request<v1::ScaleProcessRequest>,
    ) -> Reply<v1::ScaleProcessResponse> {
        processes::scale(&self.sup, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn apply_apps(&self, req: Request<v1::ApplyAppsRequest>) -> Reply<v1::ApplyAppsResponse> {
        let transport = Transport::of(req.extensions());
        processes::apply(&self.sup, req.into_inner(), transport)
            .await
            .map(Response::new)
    }

    async fn delete_process(
        &self,
        req: Request<v1::DeleteProcessRequest>,
    ) -> Reply<v1::DeleteProcessResponse> {
        processes::delete(&self.sup, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_processes(
        &self,
        req: Request<v1::ListProcessesRequest>,
    ) -> Reply<v1::ListProcessesResponse> {
        let env_values = convert::EnvValues::of(req.extensions());
        processes::list(&self.sup, env_values).map(Response::new)
    }

    async fn get_process(
        &self,
        req: Request<v1::GetProcessRequest>,
    ) -> Reply<v1::GetProcessResponse> {
        let env_values = convert::EnvValues::of(req.extensions());
        processes::get(&self.sup, req.into_inner(), env_values).map(Response::new)
    }

    type StreamLogsStream = LogStream;

    async fn stream_logs(
        &self,
        req: Request<v1::StreamLogsRequest>,
    ) -> Reply<Self::StreamLogsStream> {
        logs::stream(&self.sup, req.into_inner(), self.served.clone())
            .await
            .map(Response::new)
    }

    async fn flush_logs(&self, req: Request<v1::FlushLogsRequest>) -> Reply<v1::FlushLogsResponse> {
        logs::flush(&self.sup, req.into_inner())
            .await
            .map(Response::new)
    }

    type StreamMetricsStream = monitor::MetricsStream;

    async fn stream_metrics(
        &self,
        req: Request<v1::StreamMetricsRequest>,
    ) -> Reply<Self::StreamMetricsStream> {
        monitor::metrics(&self.sup, req.into_inner(), self.shutdown_tx.subscribe())
            .map(Response::new)
    }

    type WatchEventsStream = monitor::EventStream;

    async fn watch_events(
        &self,
        req: Request<v1::WatchEventsRequest>,
    ) -> Reply<Self::WatchEventsStream> {
        monitor::events(&self.sup, req.into_inner(), self.served.clone()).map(Response::new)
    }

    async fn ping(&self, _req: Request<v1::PingRequest>) -> Reply<v1::PingResponse> {
        Ok(Response::new(daemon::ping(
            &self.sup,
            self.started_at_ms,
            &self.notices,
            &self.listen,
        )))
    }

    async fn save_processes(
        &self,
        _req: Request<v1::SaveProcessesRequest>,
    ) -> Reply<v1::SaveProcessesResponse> {
        daemon::save(&self.sup).await.map(Response::new)
    }

    async fn resurrect(&self, req: Request<v1::ResurrectRequest>) -> Reply<v1::ResurrectResponse> {
        let transport = Transport::of(req.extensions());
        daemon::resurrect(&self.sup, req.into_inner(), transport)
            .await
            .map(Response::new)
    }

    async fn shutdown(&self, _req: Request<v1::ShutdownRequest>) -> Reply<v1::ShutdownResponse> {
        tracing::info!("shutdown requested over the API");
        self.shutdown_tx.send_replace(true);
        Ok(Response::new(v1::ShutdownResponse {}))
    }

    async fn create_token(
        &self,
        req: Request<v1::CreateTokenRequest>,
    ) -> Reply<v1::CreateTokenResponse> {
        tokens::create(&self.tokens, req.into_inner()).map(Response::new)
    }

    async fn list_tokens(
        &self,
        _req: Request<v1::ListTokensRequest>,
    ) -> Reply<v1::ListTokensResponse> {
        Ok(Response::new(tokens::list(&self.tokens)))
    }

    async fn revoke_token(
        &self,
        req: Request<v1::RevokeTokenRequest>,
    ) -> Reply<v1::RevokeTokenResponse> {
        tokens::revoke(&self.tokens, req.into_inner()).map(Response::new)
    }

    async fn reset_process(
        &self,
        req: Request<v1::ResetProcessRequest>,
    ) -> Reply<v1::ResetProcessResponse> {
        processes::reset(&self.sup, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn signal_process(
        &self,
        req: Request<v1::SignalProcessRequest>,
    ) -> Reply<v1::SignalProcessResponse> {
        processes::signal(&self.sup, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_process_env(
        &self,
        req: Request<v1::GetProcessEnvRequest>,
    ) -> Reply<v1::GetProcessEnvResponse> {
        processes::env(&self.sup, req.into_inner()).map(Response::new)
    }
}
