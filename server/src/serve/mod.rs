//! The daemon's listeners. Each one serves the same [`Routes`] (the
//! ProcessManager service, gRPC health and reflection, built once by
//! [`crate::run`]) behind the interceptor of its kind, and stops accepting
//! when its shutdown future resolves. `unix` is the local socket; a TCP
//! listener goes next to it, with its own interceptor from `auth/`.

pub(crate) mod unix;

pub(crate) use tonic::service::Routes;
