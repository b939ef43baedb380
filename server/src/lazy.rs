//! Services built on their first request, not at start: [`Lazy`] wraps the
//! constructor of a tonic service and runs it once, when a call first
//! reaches it; every later call goes to the service it built. The daemon
//! runs for months and most daemons are never asked for gRPC reflection,
//! so building it (decoding the descriptor sets into name tables, twice:
//! v1 and v1alpha) at every start is memory and code paged in for nothing.
//!
//! Owns only the built service (an `OnceLock` shared by the clones that
//! each listener's routes hold); talks to nothing else. A constructor that
//! fails answers every call with INTERNAL and its reason, and is logged
//! once: the daemon keeps serving everything else.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;
use tower::{Service, ServiceExt};

/// The constructor of a lazily built service, and what it built.
struct State<S> {
    build: Box<dyn Fn() -> Result<S, String> + Send + Sync>,
    /// Set by the first call (its `Err` holds why the constructor failed).
    built: OnceLock<Result<S, String>>,
}

/// A tonic service built by its first call (see the module header). Clones
/// share one built service.
pub(crate) struct Lazy<S> {
    state: Arc<State<S>>,
}

impl<S> Clone for Lazy<S> {
    fn clone(&self) -> Self {
        Lazy {
            state: self.state.clone(),
        }
    }
}

impl<S> Lazy<S> {
    /// A service that `build` makes when the first call arrives.
    pub(crate) fn new<E: std::fmt::Display>(
        build: impl Fn() -> Result<S, E> + Send + Sync + 'static,
    ) -> Self {
        Lazy {
            state: Arc::new(State {
                build: Box::new(move || build().map_err(|e| e.to_string())),
                built: OnceLock::new(),
            }),
        }
    }

    /// The built service, building it on the first call.
    fn get(&self) -> &Result<S, String>
    where
        S: NamedService,
    {
        self.state.built.get_or_init(|| {
            let built = (self.state.build)();
            if let Err(e) = &built {
                tracing::error!(service = S::NAME, error = %e, "cannot build the service");
            }
            built
        })
    }

    /// Whether the first call has come (tests).
    #[cfg(test)]
    fn is_built(&self) -> bool {
        self.state.built.get().is_some()
    }
}

impl<S: NamedService> NamedService for Lazy<S> {
    const NAME: &'static str = S::NAME;
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>>;

impl<S> Service<http::Request<Body>> for Lazy<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    /// Always ready: readiness is the built service's, checked per call by
    /// `oneshot` (tonic's generated servers are always ready).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> ResponseFuture {
        match self.get() {
            Ok(service) => Box::pin(service.clone().oneshot(request)),
            Err(why) => {
                let status = tonic::Status::internal(format!("{} is unavailable: {why}", S::NAME));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stand-in tonic service that answers every call with an empty OK.
    #[derive(Clone)]
    struct Echo;

    impl NamedService for Echo {
        const NAME: &'static str = "test.Echo";
    }

    impl Service<http::Request<Body>> for Echo {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<http::Response<Body>, Infallible>>;
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(Body::empty())))
        }
    }

    fn request() -> http::Request<Body> {
        http::Request::new(Body::empty())
    }

    fn grpc_status(response: &http::Response<Body>) -> Option<String> {
        response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Nothing is built until the first call; clones share one build, made
    /// once however many calls come.
    #[tokio::test]
    async fn builds_once_on_the_first_call() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let lazy = Lazy::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Echo)
        });
        let copy = lazy.clone();
        assert!(!lazy.is_built());
        assert_eq!(builds.load(Ordering::SeqCst), 0);
        for service in [lazy.clone(), copy.clone(), lazy.clone()] {
            let response = service.oneshot(request()).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::OK);
            assert_eq!(grpc_status(&response), None);
        }
        assert!(copy.is_built());
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    /// A constructor that fails answers INTERNAL with its reason, every
    /// time, and is not retried.
    #[tokio::test]
    async fn a_failed_build_answers_internal() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let lazy: Lazy<Echo> = Lazy::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Err("bad descriptor")
        });
        for _ in 0..2 {
            let response = lazy.clone().oneshot(request()).await.unwrap();
            assert_eq!(
                grpc_status(&response).as_deref(),
                Some("13"),
                "INTERNAL expected"
            );
            let message = response.headers()["grpc-message"].to_str().unwrap();
            assert!(message.contains("bad%20descriptor"), "{message}");
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }
}
