//! Worker threads (`threads = N`). Each worker is a current-thread tokio runtime with its own
//! listeners on the public addresses (`SO_REUSEPORT`: the kernel spreads new connections over
//! them), so a connection, and the tunnel session or public requests it carries, stay on one
//! thread. Worker 0 is the runtime [`crate::run`] is called on; the others are threads of their
//! own. A public request prefers a tunnel connection on its own worker
//! ([`crate::tunnel::daemons::Daemon::pick`]), so most requests never cross threads.

use crate::State;
use crate::config::ServerConfig;
use anyhow::Context;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

thread_local! {
    static WORKER: Cell<u32> = const { Cell::new(0) };
}

/// The worker the calling thread belongs to (0 outside worker threads).
pub fn current() -> u32 {
    WORKER.with(Cell::get)
}

/// How many workers `threads` asks for: `None` (`threads = 0`) is one per CPU core.
pub fn count(threads: Option<usize>) -> u32 {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// Worker 0's listeners, and the admin listener (which only worker 0 serves).
pub struct Listeners {
    /// Public HTTP and the tunnel endpoint.
    pub plain: TcpListener,
    /// HTTPS, with its certificates, when `[tls]` is set.
    pub https: Option<(TcpListener, TlsAcceptor)>,
    /// `[admin]`.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener the configuration names; with more than one worker the public ones
    /// allow the other workers to bind the same addresses.
    pub async fn bind(
        config: &ServerConfig,
        certificates: Option<&Arc<crate::tls::Certificates>>,
    ) -> anyhow::Result<Self> {
        let shared = count(config.threads) > 1;
        let send_buffer = config.limits.send_buffer;
        let plain = listen(config.listen, shared, send_buffer)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let https = match (&config.tls, certificates) {
            (Some(t), Some(certificates)) => {
                let acceptor = certificates.acceptor()?;
                let listener = listen(t.listen, shared, send_buffer)
                    .with_context(|| format!("cannot listen on {} (tls.listen)", t.listen))?;
                Some((listener, acceptor))
            }
            _ => None,
        };
        let admin = match &config.admin {
            Some(a) => Some(
                TcpListener::bind(a.listen)
                    .await
                    .with_context(|| format!("cannot listen on {} (admin.listen)", a.listen))?,
            ),
            None => None,
        };
        Ok(Self { plain, https, admin })
    }
}

/// A listening socket on `addr`; `shared` sets `SO_REUSEPORT` so other workers can listen too.
/// The connections it accepts inherit its `send_buffer` (`[limits] send_buffer`).
fn listen(addr: SocketAddr, shared: bool, send_buffer: Option<u32>) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts on `plain` and, when given, on `https` until shutdown; returns once both loops ended.
pub async fn serve(state: Arc<State>, plain: TcpListener, https: Option<(TcpListener, Option<TlsAcceptor>)>) {
    let plain = crate::public::accept(state.clone(), plain, None);
    match https {
        Some((listener, tls)) => {
            tokio::join!(plain, crate::public::accept(state, listener, tls));
        }
        None => plain.await,
    }
}

/// The workers after the first.
pub struct Others {
    accepting: Vec<oneshot::Receiver<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Others {
    /// Resolves when every other worker has stopped accepting (after shutdown).
    pub async fn accepting_done(&mut self) {
        for done in self.accepting.drain(..) {
            let _ = done.await;
        }
    }

    /// Waits for the worker threads to end (after `finished` was cancelled).
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Starts workers 1.. on the addresses `plain` and `https` are bound to, and returns once each
/// listens. They serve until shutdown, then keep their runtimes until `finished`.
pub fn spawn(
    state: &Arc<State>,
    plain: &TcpListener,
    https: Option<&(TcpListener, TlsAcceptor)>,
    finished: CancellationToken,
) -> anyhow::Result<Others> {
    let plain_addr = plain.local_addr()?;
    let https = match https {
        Some((listener, tls)) => Some((listener.local_addr()?, tls.clone())),
        None => None,
    };
    let mut others = Others { accepting: Vec::new(), threads: Vec::new() };
    for worker in 1..state.workers {
        let (state, https, finished) = (state.clone(), https.clone(), finished.clone());
        let (bound_tx, bound_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let (done_tx, done_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("ggrok-worker-{worker}"))
            .spawn(move || {
                WORKER.with(|w| w.set(worker));
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => return drop(bound_tx.send(Err(e).context("starting a worker runtime"))),
                };
                runtime.block_on(async move {
                    let bind = || -> anyhow::Result<_> {
                        let send_buffer = state.config().limits.send_buffer;
                        let plain = listen(plain_addr, true, send_buffer)
                            .with_context(|| format!("worker {worker}: cannot listen on {plain_addr}"))?;
                        let https = match https {
                            Some((addr, tls)) => Some((
                                listen(addr, true, send_buffer)
                                    .with_context(|| format!("worker {worker}: cannot listen on {addr}"))?,
                                Some(tls),
                            )),
                            None => None,
                        };
                        Ok((plain, https))
                    };
                    let (plain, https) = match bind() {
                        Ok(l) => l,
                        Err(e) => return drop(bound_tx.send(Err(e))),
                    };
                    let _ = bound_tx.send(Ok(()));
                    serve(state, plain, https).await;
                    let _ = done_tx.send(());
                    finished.cancelled().await;
                });
            })
            .context("starting a worker thread")?;
        others.threads.push(thread);
        others.accepting.push(done_rx);
        bound_rx.recv().context("a worker thread ended before listening")??;
    }
    Ok(others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_means_one_per_core() {
        assert_eq!(count(Some(3)), 3);
        assert!(count(None) >= 1);
        assert_eq!(count(Some(0)), 1);
    }

    #[tokio::test]
    async fn shared_listeners_take_the_same_port() {
        let first = listen("127.0.0.1:0".parse().unwrap(), true, None).unwrap();
        let addr = first.local_addr().unwrap();
        let second = listen(addr, true, None).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        // Without sharing, the port is taken.
        assert!(listen(addr, false, None).is_err());
    }

    #[tokio::test]
    async fn accepted_connections_get_the_send_buffer() {
        let listener = listen("127.0.0.1:0".parse().unwrap(), false, Some(64 << 10)).unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let socket = TcpSocket::from_std_stream(accepted.into_std().unwrap());
        // Linux doubles what is set, for its own bookkeeping, and autotuning no longer moves it.
        assert_eq!(socket.send_buffer_size().unwrap(), 2 * (64 << 10));
    }
}
