//! The tunnel endpoint: authenticates ggrokd's WebSocket handshake, runs HTTP/2 over it as the
//! client, opens the control stream and applies the daemon's host claims to the registry.

use crate::State;
use crate::auth::{authenticate, bearer};
use crate::config::ClientEntry;
use crate::metrics::{Limit, Rejection};
use crate::registry::{Claim, Owner, Refused};
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use ggrok_proto::control::{ClientMessage, ControlError, ServerCodec, ServerMessage, TunnelKey};
use ggrok_proto::host::HostPattern;
use ggrok_proto::http::{self as body, Body};
use ggrok_proto::{
    CONTROL_AUTHORITY, CONTROL_PROTOCOL, HEADER_PROTOCOL, HEADER_PROTOCOL_MAX, tuning, version,
};
use http::{Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper::ext::Protocol;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::codec::{Framed, LengthDelimitedCodecError};
use tracing::{debug, info, warn};

/// One connected ggrokd: what the registry hands to the proxy.
#[derive(Debug)]
pub struct Session {
    /// Unique for the life of the server process.
    pub id: u64,
    /// The `[[client]]` name it authenticated as.
    pub client: String,
    /// The protocol version agreed on.
    pub protocol: u32,
    /// Opens streams to the daemon.
    pub sender: SendRequest<Body>,
    /// Places for requests in flight (`max_streams_per_session`).
    pub streams: Arc<tokio::sync::Semaphore>,
}

impl Owner for Session {
    fn id(&self) -> u64 {
        self.id
    }
    fn client(&self) -> &str {
        &self.client
    }
}

/// Answers a request on the tunnel path: 400 if it is not a ggrokd WebSocket handshake, 401 if the
/// token is wrong (before any upgrade), else 101 and a session task.
pub fn accept(state: &Arc<State>, peer: SocketAddr, mut req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let is_websocket = req.method() == Method::GET
        && ggrok_proto::headers::upgrade_protocol(headers)
            .is_some_and(|p| p.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_websocket) else {
        debug!(%peer, "non-WebSocket request on the tunnel path");
        state.metrics.rejected(Rejection::NotWebsocket);
        return body::text(
            StatusCode::BAD_REQUEST,
            "ggrok: this is the tunnel endpoint; it expects a WebSocket upgrade from ggrokd",
        );
    };
    let header = |name| headers.get(name).and_then(|v: &http::HeaderValue| v.to_str().ok());
    let agreed = version::client_range(header(HEADER_PROTOCOL), header(HEADER_PROTOCOL_MAX))
        .and_then(|client| version::agree(client, state.protocol_versions()));
    let protocol = match agreed {
        Ok(v) => v,
        Err(e) => {
            warn!(%peer, "tunnel client refused: {e}");
            state.metrics.rejected(Rejection::BadVersion);
            return body::text(StatusCode::BAD_REQUEST, format!("ggrok: {e}"));
        }
    };
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer);
    let client = match (token, &state.config.anonymous_hosts) {
        (Some(t), _) => authenticate(&state.config.clients, t).cloned(),
        // Each anonymous client is a client of its own: none can take over another's hosts.
        (None, Some(hosts)) => Some(ClientEntry {
            name: format!("anonymous-{}", state.next_anonymous_id()),
            token_sha256: [0; 32],
            hosts: hosts.clone(),
        }),
        (None, None) => None,
    };
    let Some(client) = client else {
        warn!(%peer, "tunnel client refused: unauthorized (missing or unknown token)");
        state.metrics.rejected(Rejection::Unauthorized);
        let mut resp =
            body::text(StatusCode::UNAUTHORIZED, "ggrok: unauthorized: the token is missing or unknown");
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return resp;
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state2 = state.clone();
    state.sessions.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ggrok_proto::wsio::config()),
                )
                .await;
                serve(state2, client, peer, protocol, ws).await;
            }
            Err(e) => debug!(%peer, "tunnel upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
        .header(HEADER_PROTOCOL, protocol)
        .body(body::empty())
        .expect("static response parts are valid")
}

async fn serve(
    state: Arc<State>,
    client: ClientEntry,
    peer: SocketAddr,
    protocol: u32,
    ws: WebSocketStream<TokioIo<Upgraded>>,
) {
    let id = state.next_session_id();
    let setup = tokio::time::timeout(
        state.config.limits.handshake_timeout,
        open(ws, state.config.keepalive_interval),
    );
    let (sender, control, mut connection) = match setup.await {
        Ok(Ok(parts)) => parts,
        Ok(Err(e)) => {
            state.metrics.rejected(Rejection::SetupFailed);
            return warn!(session = id, client = %client.name, %peer, "tunnel setup failed: {e:#}");
        }
        Err(_) => {
            state.metrics.rejected(Rejection::SetupFailed);
            state.metrics.limit_hit(Limit::HandshakeTimeout);
            return warn!(session = id, client = %client.name, %peer, "tunnel setup timed out");
        }
    };
    let streams = Arc::new(tokio::sync::Semaphore::new(state.config.limits.max_streams_per_session));
    let session = Arc::new(Session { id, client: client.name.clone(), protocol, sender, streams });
    info!(session = id, client = %client.name, %peer, "tunnel client connected");
    let _connected = state.metrics.session_connected();
    forget_unclaimed_later(&state, &client.name, id);
    let codec = ServerCodec::with_max_message(state.config.limits.max_control_message);
    let mut control = Framed::new(TokioIo::new(control), codec);
    let ended = |done: Result<Result<(), hyper::Error>, tokio::task::JoinError>| match done {
        Ok(Ok(())) => "connection closed".to_owned(),
        Ok(Err(e)) => format!("connection failed: {}", ggrok_proto::headers::error_chain(&e)),
        Err(e) => format!("connection task failed: {e}"),
    };
    let mut connection_done = false;
    let mut why = tokio::select! {
        why = run_control(&state, &client, &session, &mut control) => why,
        done = &mut connection => {
            connection_done = true;
            ended(done)
        }
        _ = state.close_sessions.cancelled() => "server shutting down".to_owned(),
    };
    // New requests for these hosts now get "offline, reconnecting" until the client is back.
    let released = state.registry.remove_session(id);
    drop(session);
    drop(control);
    if !connection_done {
        info!(session = id, client = %client.name, hosts = released.len(), "tunnel client going away ({why}); hosts offline, requests in flight continue");
        // The daemon closed its control stream to shut down, or we are shutting down: requests in
        // flight finish first; the connection ends when the daemon closes it, when the last of
        // them is done (dropping the last sender sends GOAWAY), or at the end of our shutdown.
        tokio::select! {
            done = &mut connection => why = format!("{why}; {}", ended(done)),
            _ = tokio::time::sleep(DRAIN_LIMIT) => connection.abort(),
            _ = state.close_sessions.cancelled() => {
                if tokio::time::timeout(Duration::from_secs(1), &mut connection).await.is_err() {
                    connection.abort();
                }
            }
        }
    }
    info!(session = id, client = %client.name, hosts = released.len(), "tunnel client disconnected: {why}");
}

/// How long a returning client has to claim its hosts again before the ones it did not claim stop
/// answering "offline, reconnecting" and become unknown (404).
const RECLAIM_WINDOW: Duration = Duration::from_secs(5);

fn forget_unclaimed_later(state: &Arc<State>, client: &str, session: u64) {
    let (state, client, started) = (state.clone(), client.to_owned(), std::time::Instant::now());
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(RECLAIM_WINDOW) => {
                state.registry.forget_offline(&client, started);
                tracing::debug!(session, client, "forgot hosts not claimed again");
            }
            _ = state.shutdown.cancelled() => {}
        }
    });
}

type Connection = tokio::task::JoinHandle<Result<(), hyper::Error>>;

/// How long a connection whose control stream ended may go on carrying requests in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// HTTP/2 handshake over the WebSocket, then the control stream.
async fn open(
    ws: WebSocketStream<TokioIo<Upgraded>>,
    keepalive: Duration,
) -> anyhow::Result<(SendRequest<Body>, Upgraded, Connection)> {
    let io = TokioIo::new(ggrok_proto::wsio::ws_io(ws));
    let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(tuning::STREAM_WINDOW)
        .initial_connection_window_size(tuning::CONNECTION_WINDOW)
        .max_frame_size(tuning::MAX_FRAME_SIZE)
        .keep_alive_interval(keepalive)
        .keep_alive_timeout(keepalive)
        .keep_alive_while_idle(true)
        .handshake::<_, Body>(io)
        .await
        .context("HTTP/2 handshake")?;
    let connection = tokio::spawn(conn);

    // A plain request first: its answer arrives after the daemon's SETTINGS, which must enable
    // extended CONNECT before the control stream can be opened.
    let hello = Request::builder()
        .uri(format!("http://{CONTROL_AUTHORITY}/"))
        .version(Version::HTTP_2)
        .body(body::empty())?;
    sender.send_request(hello).await.context("first request")?;

    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{CONTROL_AUTHORITY}/"))
        .version(Version::HTTP_2)
        .body(body::empty())?;
    req.extensions_mut().insert(Protocol::from_static(CONTROL_PROTOCOL));
    let mut resp = sender.send_request(req).await.context("opening the control stream")?;
    if resp.status() != StatusCode::OK {
        bail!("the daemon answered {} to the control stream", resp.status());
    }
    let control = hyper::upgrade::on(&mut resp).await.context("control stream upgrade")?;
    Ok((sender, control, connection))
}

/// Reads the daemon's messages until the control stream ends; returns why it ended.
async fn run_control(
    state: &State,
    client: &ClientEntry,
    session: &Arc<Session>,
    control: &mut Framed<TokioIo<Upgraded>, ServerCodec>,
) -> String {
    let v2 = session.protocol >= 2;
    let hello = ServerMessage::Hello {
        version: session.protocol,
        client: client.name.clone(),
        session: session.id,
        worker: v2.then_some(0),
        workers: v2.then_some(1),
        replica: None,
    };
    if let Err(e) = control.send(hello).await {
        return format!("control stream: {e}");
    }
    // The daemon must greet within the handshake timeout: a silent control stream would otherwise
    // hold a session (and its slot) forever.
    match tokio::time::timeout(state.config.limits.handshake_timeout, control.next()).await {
        Ok(Some(Ok(ClientMessage::Hello { version, agent, .. }))) => {
            info!(session = session.id, agent, version, "daemon identified");
        }
        Ok(Some(Ok(other))) => return format!("the daemon sent {other:?} before its greeting"),
        Ok(Some(Err(e))) => {
            if is_oversized(&e) {
                state.metrics.limit_hit(Limit::MaxControlMessage);
            }
            return format!("control stream: {e}");
        }
        Ok(None) => return "control stream closed before the greeting".to_owned(),
        Err(_) => {
            state.metrics.limit_hit(Limit::HandshakeTimeout);
            warn!(session = session.id, "limit: no greeting within handshake_timeout; closing the session");
            return "no greeting on the control stream".to_owned();
        }
    }
    loop {
        let reply = match control.next().await {
            None => return "control stream closed".to_owned(),
            Some(Err(ControlError::Malformed(e))) => {
                warn!(session = session.id, "malformed control message: {e}");
                ServerMessage::Error { message: format!("malformed control message: {e}") }
            }
            Some(Err(e)) => {
                if is_oversized(&e) {
                    state.metrics.limit_hit(Limit::MaxControlMessage);
                }
                return e.to_string();
            }
            Some(Ok(ClientMessage::Hello { .. })) => {
                ServerMessage::Error { message: "greeted twice".to_owned() }
            }
            Some(Ok(ClientMessage::Register { host })) => register(state, client, session, host),
            Some(Ok(ClientMessage::Claim { tunnel: TunnelKey::Http { host }, .. })) => {
                match register(state, client, session, host) {
                    ServerMessage::Registered { host } => {
                        ServerMessage::Claimed { tunnel: TunnelKey::Http { host } }
                    }
                    ServerMessage::Refused { host, reason } => {
                        ServerMessage::ClaimRefused { tunnel: TunnelKey::Http { host }, reason }
                    }
                    other => other,
                }
            }
            Some(Ok(ClientMessage::Release { tunnel: TunnelKey::Http { host } })) => {
                let key = HostPattern::parse(&host).map(|p| p.to_string()).unwrap_or(host.clone());
                if state.registry.release(&key, session.id) {
                    info!(session = session.id, host = %key, "host unregistered");
                }
                ServerMessage::Released { tunnel: TunnelKey::Http { host } }
            }
            Some(Ok(ClientMessage::Unknown)) => {
                ServerMessage::Error { message: "unknown control message type; ignored".to_owned() }
            }
            Some(Ok(ClientMessage::Unregister { host })) => {
                let key = HostPattern::parse(&host).map(|p| p.to_string()).unwrap_or(host.clone());
                if state.registry.release(&key, session.id) {
                    info!(session = session.id, host = %key, "host unregistered");
                }
                ServerMessage::Unregistered { host }
            }
        };
        if let Err(e) = control.send(reply).await {
            return format!("control stream: {e}");
        }
    }
}

fn register(state: &State, client: &ClientEntry, session: &Arc<Session>, host: String) -> ServerMessage {
    let refuse = |reason: String| {
        warn!(session = session.id, client = %client.name, host, "host refused: {reason}");
        ServerMessage::Refused { host: host.clone(), reason }
    };
    let pattern = match HostPattern::parse(&host) {
        Ok(p) => p,
        Err(e) => return refuse(format!("invalid host {host:?}: {e}")),
    };
    if !client.hosts.iter().any(|allowed| allowed.allows(&pattern)) {
        let allowed: Vec<String> = client.hosts.iter().map(|h| h.to_string()).collect();
        return refuse(format!(
            "client {:?} may not claim {pattern}; its allowed hosts are {}",
            client.name,
            allowed.join(", ")
        ));
    }
    match state.registry.claim(&pattern.to_string(), session, state.config.limits.max_hosts_per_client) {
        Ok(Claim::Registered) => {
            info!(session = session.id, client = %client.name, host = %pattern, "host registered");
            ServerMessage::Registered { host }
        }
        Ok(Claim::TookOver(old)) => {
            info!(session = session.id, client = %client.name, host = %pattern, old_session = old, "host taken over from an older session of the same client");
            ServerMessage::Registered { host }
        }
        Err(refused) => {
            if matches!(refused, Refused::TooMany { .. }) {
                state.metrics.limit_hit(Limit::MaxHostsPerClient);
            }
            refuse(refused.to_string())
        }
    }
}

/// Whether a control stream failed on a message over `max_control_message`.
fn is_oversized(e: &ControlError) -> bool {
    matches!(e, ControlError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<LengthDelimitedCodecError>()))
}
