//! The connection to a remote daemon: TCP (every address of the host in
//! turn), then TLS with rustls for https (ALPN h2), all within
//! [`CONNECT_TIMEOUT`]; then the HTTP/2 channel tonic runs over it. The
//! channel dials again the same way should it need to reconnect.
//!
//! A failure is explained for people: the URL, and what to do about it
//! (nothing listening, a name that does not resolve, no answer, a
//! certificate that is not trusted: `--ca-cert`, a daemon that wants a
//! client certificate, a scheme that does not match the port).
//!
//! Talks to: the network only.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::Remote;
use super::url::{HostUrl, Scheme};

/// Longest wait for a connection: name resolution, TCP, TLS and HTTP/2
/// handshakes together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("connection refused by {addr}")]
    Refused { addr: SocketAddr },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("no answer within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
}

/// A byte stream tonic can run HTTP/2 on: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One connection to `url`, with TLS when `tls` is given.
async fn dial(
    url: &HostUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Io>, DialError> {
    let attempt = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|source| DialError::Resolve {
                host: url.host.clone(),
                source,
            })?
            .collect();
        let mut last = DialError::NoAddress {
            host: url.host.clone(),
        };
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    last = DialError::Refused { addr };
                }
                Err(source) => last = DialError::Connect { addr, source },
            }
        }
        let tcp = tcp.ok_or(last)?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = tls else {
            return Ok(Box::new(tcp) as Box<dyn Io>);
        };
        // Parsed when the URL was: a DNS name or an IP address.
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| DialError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(DialError::Tls)?;
        Ok(Box::new(stream) as Box<dyn Io>)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or(Err(DialError::Timeout))
}

/// The HTTP/2 channel to `remote`, or an error that says what to do.
pub async fn channel(remote: &Remote) -> anyhow::Result<Channel> {
    let url = remote.url.clone();
    let tls = remote.tls.clone();
    // The scheme tonic sees is http: TLS is this connector's business.
    let endpoint = Endpoint::from_shared(format!("http://{}", url.authority()))
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let connecting = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let url = url.clone();
        let tls = tls.clone();
        async move { dial(&url, tls).await.map(TokioIo::new) }
    }));
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(explain(remote, &e)),
        Err(_) => Err(explain(remote, &DialError::Timeout)),
    }
}

/// A failed connection, said for people (see the module header).
pub fn explain(remote: &Remote, err: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let url = &remote.url;
    let reach = format!("cannot reach the daemon at {url}{}", remote.from_where());
    let ca_hint = match &remote.ca_cert {
        Some(ca) => format!(
            "check that {} is the CA that signed the daemon's certificate (--ca-cert)",
            ca.display()
        ),
        None => {
            "if a CA of your own signed the daemon's certificate, trust it with --ca-cert FILE \
                 (or PMD_CA_CERT)"
                .to_string()
        }
    };
    if let Some(dial) = find::<DialError>(err) {
        return match dial {
            DialError::Refused { addr } => anyhow::anyhow!(
                "{reach}: connection refused by {addr}; is pmdaemond running there with --listen on port {}?",
                url.port
            ),
            DialError::Tls(io) => {
                let why = match tls_error(io) {
                    Some(rustls::Error::InvalidMessage(_)) if url.scheme == Scheme::Https => {
                        "; if the daemon listens without TLS, use http://".to_string()
                    }
                    _ => String::new(),
                };
                anyhow::anyhow!("TLS with {url} failed: {io}; {ca_hint}{why}")
            }
            other => anyhow::anyhow!("{reach}: {other}"),
        };
    }
    // A Status prints its Debug dump; its message is what it says.
    let describe = |e: &(dyn std::error::Error + 'static)| match e.downcast_ref::<tonic::Status>() {
        Some(status) => status.message().to_string(),
        None => e.to_string(),
    };
    let mut chain = describe(err);
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = describe(c);
        if !chain.contains(&text) {
            chain = format!("{chain}: {text}");
        }
        cause = c.source();
    }
    if let Some(tls) = find_tls(err) {
        let hint = match tls {
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
            | rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure)
            | rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate) => {
                "the daemon wants a client certificate it trusts: --client-cert FILE --client-key FILE"
                    .to_string()
            }
            _ => ca_hint,
        };
        return anyhow::anyhow!("TLS with {url} failed: {tls}; {hint}");
    }
    match url.scheme {
        Scheme::Http => anyhow::anyhow!(
            "cannot talk to the daemon at {url}{}: {chain}; if it serves TLS, use https://{}",
            remote.from_where(),
            url.authority()
        ),
        Scheme::Https => anyhow::anyhow!(
            "cannot talk to the daemon at {url}{}: {chain}",
            remote.from_where()
        ),
    }
}

/// The HTTP/2 connection preface, then an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// What went wrong under a call that failed with a transport error, found
/// on a fresh connection: the daemon's first answer to an HTTP/2 preface
/// is its SETTINGS, or a TLS alert (TLS 1.3 refuses a client certificate
/// only after the handshake, and the call that met it may have seen only
/// "connection closed"). `failed` is what the call said.
pub async fn diagnose(
    remote: &Remote,
    failed: &(dyn std::error::Error + 'static),
) -> anyhow::Error {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut io = match dial(&remote.url, remote.tls.clone()).await {
            Ok(io) => io,
            Err(e) => return Some(explain(remote, &e)),
        };
        let mut first = [0u8; 9];
        let answer = async {
            io.write_all(H2_PREFACE).await?;
            io.flush().await?;
            io.read(&mut first).await
        };
        match answer.await {
            Err(e) => Some(explain(remote, &e)),
            Ok(_) => None,
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
        Ok(Some(explained)) => explained,
        _ => explain(remote, failed),
    }
}

/// The first error of type `T` in the chain of `err`.
fn find<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cause = Some(err);
    while let Some(c) = cause {
        if let Some(found) = c.downcast_ref::<T>() {
            return Some(found);
        }
        cause = c.source();
    }
    None
}

/// A rustls error inside an I/O error.
fn tls_error(io: &io::Error) -> Option<&rustls::Error> {
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A rustls error anywhere in the chain (on its own or inside an I/O
/// error): TLS failing after the handshake, e.g. a refused client
/// certificate in TLS 1.3.
fn find_tls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(err);
    while let Some(c) = cause {
        if let Some(found) = c.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = c.downcast_ref::<io::Error>().and_then(tls_error) {
            return Some(found);
        }
        cause = c.source();
    }
    None
}

/// Whether something still accepts TCP connections at `url` (the
/// connection is closed at once): how `pmd kill` sees a remote daemon go.
pub async fn answers(url: &HostUrl) -> bool {
    let Ok(Ok(addrs)) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::lookup_host((url.host.as_str(), url.port)),
    )
    .await
    else {
        return false;
    };
    for addr in addrs {
        if let Ok(Ok(_)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            return true;
        }
    }
    false
}
