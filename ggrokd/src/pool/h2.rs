//! HTTP/2 to local services (h2c, or `h2` by ALPN): one multiplexed connection per key, shared by
//! every request to it, opened at the first request and again once it has closed. Its I/O runs as
//! a task of its own on the link's runtime. A request refused by a shared connection before the
//! service saw it (the connection was closing) is sent again once on a new connection.

use super::{Error, LocalStream, RequestBody};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::debug;

/// PINGs on an idle connection to a local service, so a dead one is found before a request.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The open HTTP/2 connections, by key.
pub struct Multiplexed<B: RequestBody> {
    conns: Arc<Mutex<HashMap<Box<str>, SendRequest<B>>>>,
}

impl<B: RequestBody> Clone for Multiplexed<B> {
    fn clone(&self) -> Self {
        Self { conns: self.conns.clone() }
    }
}

impl<B: RequestBody> Default for Multiplexed<B> {
    fn default() -> Self {
        Self { conns: Arc::default() }
    }
}

impl<B: RequestBody> Multiplexed<B> {
    /// Sends `req` (an absolute URI) on the connection under `key`, opened with `connect` when
    /// there is none (or a new stream `fresh` is given, which becomes it).
    pub async fn send<C>(
        &self,
        key: &str,
        connect: C,
        fresh: Option<LocalStream>,
        req: Request<B>,
    ) -> Result<Response<Incoming>, Error>
    where
        C: Future<Output = Result<LocalStream, Error>>,
    {
        let shared = match fresh {
            Some(_) => None,
            None => self.conns.lock().expect("h2 lock").get(key).filter(|s| !s.is_closed()).cloned(),
        };
        let mut connect = Some(connect);
        let (mut sender, reused) = match (shared, fresh) {
            (Some(sender), _) => (sender, true),
            (None, Some(stream)) => (self.open(key, stream).await?, false),
            (None, None) => (self.open(key, connect.take().expect("unused").await?).await?, false),
        };
        let sent = match sender.ready().await {
            Ok(()) => sender.try_send_request(req).await,
            Err(e) if reused => {
                debug!(key, "shared HTTP/2 connection to the local service is gone: {e}");
                let connect = connect.take().expect("unused");
                let mut sender = self.open(key, connect.await?).await?;
                sender.ready().await?;
                return Ok(sender.send_request(req).await?);
            }
            Err(e) => return Err(e.into()),
        };
        match sent {
            Ok(resp) => Ok(resp),
            Err(mut e) => match (e.take_message(), connect.take()) {
                (Some(again), Some(connect)) if reused => {
                    debug!(key, "shared HTTP/2 connection refused the request unprocessed; retrying");
                    let mut sender = self.open(key, connect.await?).await?;
                    sender.ready().await?;
                    Ok(sender.send_request(again).await?)
                }
                _ => Err(e.into_error().into()),
            },
        }
    }

    /// HTTP/2 over `stream`, shared under `key` from now on.
    async fn open(&self, key: &str, stream: LocalStream) -> Result<SendRequest<B>, Error> {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .handshake(TokioIo::new(stream))
            .await?;
        let owned: Box<str> = key.into();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(key = &*owned, "HTTP/2 connection to the local service ended: {e}");
            }
        });
        self.conns.lock().expect("h2 lock").insert(key.into(), sender.clone());
        Ok(sender)
    }
}
