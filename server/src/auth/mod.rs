//! Who may talk to the daemon, one module per kind of listener: `peer`
//! checks the Unix socket's peer credentials. Each listener in `serve/`
//! installs the interceptor of its kind; the services behind them are the
//! same.

pub(crate) mod peer;
