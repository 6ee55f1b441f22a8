//! The listener and its connections: the accept loop with its connection limit, one task per
//! connection serving HTTP/1.1 with hyper, the per-connection watchdog that enforces the idle
//! and slow-client timeouts, optional TLS, and a draining shutdown.
//!
//! # Timeouts
//!
//! hyper's own header timeout starts as soon as a connection waits for a request, so it cannot
//! tell an idle kept-alive connection from a client dribbling its headers. Each connection
//! therefore keeps a small [`Clock`]: its socket reads move it from *idle* to *head* (a request
//! has begun), the service moves it to *busy* when hyper hands over a complete head, and back to
//! *idle* when the answer is ready. A watchdog polled in the connection's own task (no extra
//! task, no lock) closes the connection when the current phase outlives its limit: `idle_timeout`
//! for idle, `header_timeout` for head. Bodies are timed by the handler (`request_timeout`, then
//! 408); the busy phase has a generous backstop in case a request hangs anyway.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use sluice_pipelines::{BuildError, Str, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower_service::Service as _;

use super::config::Settings;
use super::handler::{self, ConnInfo, Counters, Shared};
use crate::shutdown::Shutdown;
use crate::sources::throttle::Throttle;
use crate::sources::{Source, SourceContext, SourceError, SourceFuture};

/// How long open connections get to finish their requests once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Added to the longest a request may legitimately take before a busy connection is closed.
const BUSY_MARGIN: Duration = Duration::from_secs(30);
/// The read buffer of a connection, at least (it bounds a request head being read).
const MIN_READ_BUFFER: usize = 64 * 1024;
/// Pause after a failed `accept` (out of file descriptors, usually) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The `http_server` source, bound and ready to run.
pub struct HttpServer {
    settings: Arc<Settings>,
    listener: std::net::TcpListener,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("address", &self.local_addr())
            .field("path", &self.settings.path)
            .finish()
    }
}

impl HttpServer {
    /// Binds the listening socket and loads the TLS files.
    ///
    /// # Errors
    /// A [`BuildError`] at `address` when the socket cannot be bound, at `tls` when the files are
    /// unusable.
    pub fn bind(settings: Arc<Settings>) -> Result<Self, BuildError> {
        let address = settings.address;
        let listener = std::net::TcpListener::bind(address)
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|error| {
                BuildError::at("address", format!("cannot listen on {address}: {error}"))
            })?;
        #[cfg(feature = "tls")]
        let tls = settings.tls.as_ref().map(tls::acceptor).transpose()?;
        Ok(HttpServer {
            settings,
            listener,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// The address the server listens on (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

impl Source for HttpServer {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(serve(*self, ctx))
    }
}

/// Accepts connections until shutdown, then lets the open ones finish.
async fn serve(server: HttpServer, ctx: SourceContext) -> Result<(), SourceError> {
    let settings = server.settings;
    let listener = TcpListener::from_std(server.listener).map_err(SourceError::Listen)?;
    #[cfg(feature = "tls")]
    let tls = server.tls;
    let shared = Arc::new(Shared {
        budget: Arc::new(Semaphore::new(
            usize::try_from(settings.max_in_flight_bytes).unwrap_or(usize::MAX >> 4),
        )),
        path_value: handler::path_value(&settings),
        settings: settings.clone(),
        output: ctx.output,
        dead_letter: ctx.dead_letter,
        name: ctx.name.clone(),
        shutdown: ctx.shutdown.clone(),
        source: ctx.id,
        counters: Counters::new(ctx.metrics),
    });
    let router = handler::router(shared.clone());
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(None)
        .max_header_size(settings.max_header_bytes as usize)
        .max_buf_size((settings.max_header_bytes as usize).max(MIN_READ_BUFFER));
    let builder = Arc::new(builder);
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let mut connections = JoinSet::new();
    let mut limit_log = Throttle::default();
    let mut accept_log = Throttle::default();
    let shutdown = ctx.shutdown;
    match listener.local_addr() {
        Ok(address) => {
            tracing::info!(source = %ctx.name, %address, path = %settings.path, "Listening for events");
        }
        Err(_) => tracing::info!(source = %ctx.name, path = %settings.path, "Listening for events"),
    }
    loop {
        while connections.try_join_next().is_some() {}
        if limit.available_permits() == 0 {
            shared.counters.connection_limit_reached.add(1);
            if let Some(left_out) = limit_log.hit() {
                tracing::warn!(source = %ctx.name, max_connections = settings.max_connections, left_out, "Connection limit reached; new connections wait");
            }
        }
        let permit = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    shared.counters.connection_errors.add(1);
                    if let Some(left_out) = accept_log.hit() {
                        tracing::warn!(source = %ctx.name, %error, left_out, "Cannot accept a connection");
                    }
                    drop(permit);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        shared.counters.connections.add(1);
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            shared: shared.clone(),
            router: router.clone(),
            builder: builder.clone(),
            peer,
            shutdown: shutdown.clone(),
        };
        #[cfg(feature = "tls")]
        let tls = tls.clone();
        connections.spawn(async move {
            #[cfg(feature = "tls")]
            connection.run(stream, tls).await;
            #[cfg(not(feature = "tls"))]
            connection.run(stream).await;
            drop(permit);
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
    Ok(())
}

/// One accepted connection.
struct Connection {
    shared: Arc<Shared>,
    router: Router,
    builder: Arc<http1::Builder>,
    peer: SocketAddr,
    shutdown: Shutdown,
}

impl Connection {
    #[cfg(not(feature = "tls"))]
    async fn run(self, stream: TcpStream) {
        let clock = Arc::new(Clock::new());
        let io = Watched {
            inner: stream,
            clock: clock.clone(),
        };
        self.serve(io, clock).await;
    }

    #[cfg(feature = "tls")]
    async fn run(self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let clock = Arc::new(Clock::new());
        let io = Watched {
            inner: stream,
            clock: clock.clone(),
        };
        match tls {
            None => self.serve(io, clock).await,
            Some(acceptor) => {
                // The handshake is part of the first request's head: it gets `header_timeout`.
                let timeout = self.shared.settings.header_timeout;
                match tokio::time::timeout(timeout, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => self.serve(stream, clock).await,
                    Ok(Err(_)) => self.shared.counters.connection_errors.add(1),
                    Err(_) => self.shared.counters.connections_slow_closed.add(1),
                }
            }
        }
    }

    async fn serve<I>(self, io: I, clock: Arc<Clock>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let settings = &self.shared.settings;
        let peer = self.peer.ip().to_canonical();
        let info = ConnInfo {
            peer,
            peer_value: Value::String(Str::from(peer.to_string())),
        };
        let router = self.router;
        let counters_shared = self.shared.clone();
        let service_clock = clock.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            service_clock.enter(Phase::Busy);
            counters_shared.counters.requests.add(1);
            request.extensions_mut().insert(info.clone());
            let mut router = router.clone();
            let clock = service_clock.clone();
            async move {
                let response = router.call(request).await;
                clock.enter(Phase::Idle);
                response
            }
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let busy_limit = settings.request_timeout + settings.max_wait + BUSY_MARGIN;
        let mut watchdog = Watchdog::new(
            clock,
            [settings.idle_timeout, settings.header_timeout, busy_limit],
        );
        let mut draining = false;
        let counters = &self.shared.counters;
        loop {
            tokio::select! {
                biased;
                result = connection.as_mut() => {
                    if let Err(error) = result
                        && (error.is_parse() || error.is_parse_too_large() || error.is_timeout())
                    {
                        counters.connection_errors.add(1);
                    }
                    return;
                }
                // Dropping the connection closes the socket.
                expired = &mut watchdog => {
                    match expired {
                        Phase::Idle => counters.connections_idle_closed.add(1),
                        Phase::Head => counters.connections_slow_closed.add(1),
                        Phase::Busy => counters.connections_stuck_closed.add(1),
                    }
                    return;
                }
                () = self.shutdown.wait(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection is doing, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Waiting for a request.
    Idle = 0,
    /// A request has begun; its head is not complete.
    Head = 1,
    /// A request is being handled.
    Busy = 2,
}

/// A connection's phase and when it began. Only the connection's own task touches it; atomics
/// make it shareable between the socket wrapper and the service.
#[derive(Debug)]
struct Clock {
    base: Instant,
    phase: AtomicU8,
    /// Milliseconds since `base`.
    since: AtomicU64,
}

impl Clock {
    fn new() -> Self {
        Clock {
            base: Instant::now(),
            phase: AtomicU8::new(Phase::Idle as u8),
            since: AtomicU64::new(0),
        }
    }

    fn enter(&self, phase: Phase) {
        let since = self.base.elapsed().as_millis() as u64;
        self.since.store(since, Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Bytes arrived: an idle connection has begun a request.
    #[inline]
    fn on_read(&self) {
        if self.phase.load(Ordering::Relaxed) == Phase::Idle as u8 {
            self.enter(Phase::Head);
        }
    }

    fn current(&self) -> (Phase, Instant) {
        let phase = match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Idle,
            1 => Phase::Head,
            _ => Phase::Busy,
        };
        let since = self.base + Duration::from_millis(self.since.load(Ordering::Relaxed));
        (phase, since)
    }
}

/// Completes with the phase that outlived its limit. Re-reads the clock on every poll; polled
/// right after the connection in the same task, so it always sees the latest phase.
struct Watchdog {
    clock: Arc<Clock>,
    /// Limits of idle, head and busy.
    limits: [Duration; 3],
    sleep: Pin<Box<Sleep>>,
}

impl Watchdog {
    fn new(clock: Arc<Clock>, limits: [Duration; 3]) -> Self {
        let (_, since) = clock.current();
        Watchdog {
            sleep: Box::pin(tokio::time::sleep_until(since + limits[0])),
            clock,
            limits,
        }
    }
}

impl Future for Watchdog {
    type Output = Phase;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Phase> {
        let (phase, since) = self.clock.current();
        let deadline = since + self.limits[phase as usize];
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(phase),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A socket that tells its [`Clock`] when bytes arrive.
struct Watched<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && buf.filled().len() > before
        {
            self.clock.on_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(feature = "tls")]
mod tls {
    //! Loading the certificate chain and key into a rustls acceptor (aws-lc-rs, the provider
    //! reqwest uses, so there is one crypto stack).

    use std::sync::Arc;

    use sluice_pipelines::BuildError;
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::crypto::aws_lc_rs;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::super::config::TlsConfig;

    /// An acceptor serving the configured certificate.
    pub(super) fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, BuildError> {
        let certs = CertificateDer::pem_file_iter(&config.cert_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| {
                BuildError::at(
                    "tls.cert_file",
                    format!("cannot read {}: {error}", config.cert_file.display()),
                )
            })?;
        if certs.is_empty() {
            return Err(BuildError::at(
                "tls.cert_file",
                format!("{} holds no PEM certificate", config.cert_file.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|error| {
            BuildError::at(
                "tls.key_file",
                format!(
                    "cannot read a PEM private key from {}: {error}",
                    config.key_file.display()
                ),
            )
        })?;
        let mut server =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|error| BuildError::at("tls", error.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|error| {
                    BuildError::at(
                        "tls",
                        format!("the certificate and key do not fit: {error}"),
                    )
                })?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(server)))
    }
}
