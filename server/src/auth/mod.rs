//! Who may talk to the daemon, one module per kind of listener: `peer`
//! checks the Unix socket's peer credentials; `token` keeps the bearer
//! tokens of the TCP listener and `layer` holds its two tower layers
//! (authentication: which token, which scope; authorization: may that scope
//! call this RPC). Each listener in `serve/` installs the checks of its kind;
//! the services behind them are the same.

pub(crate) mod layer;
pub(crate) mod peer;
pub(crate) mod token;
