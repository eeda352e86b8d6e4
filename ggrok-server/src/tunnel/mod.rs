//! The tunnel endpoint: authenticates ggrokd's handshake, runs HTTP/2 over the connection as the
//! client, opens the control stream, and keeps the session among its daemon's sessions while it
//! lives.
//!
//! Two transports share the tunnel path: a WebSocket (`Upgrade: websocket`; binary messages carry
//! the bytes; crosses every proxy and PaaS), and the raw one (`Upgrade: ggrok-h2`; HTTP/2 straight
//! on the upgraded connection, without WebSocket framing and masking), which ggrokd tries first.
//!
//! - [`session`]: one connection, as the proxy uses it;
//! - [`daemons`]: the sessions of one ggrokd, together;
//! - [`registry`]: which daemon serves which host;
//! - [`control`]: the control stream's conversation;
//! - [`auth`]: the tokens daemons present;
//! - `h2c`: the HTTP/2 client side of a connection.

pub mod auth;
pub mod control;
pub mod daemons;
mod h2c;
pub mod ports;
pub mod registry;
pub mod session;
pub mod standby;

pub use h2c::SendError;
pub use session::Session;

use crate::State;
use crate::config::ClientEntry;
use crate::ops::metrics::{Limit, Rejection};
use anyhow::{Context, bail};
use auth::{authenticate, bearer};
use ggrok_proto::control::ServerCodec;
use ggrok_proto::http::{self as body, Body};
use ggrok_proto::{
    CONTROL_AUTHORITY, CONTROL_PROTOCOL, HEADER_PROTOCOL, HEADER_PROTOCOL_MAX, RAW_TRANSPORT, tuning, version,
};
use h2::ext::Protocol;
use http::{Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use registry::Owner;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

/// How the tunnel's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// In WebSocket binary messages.
    WebSocket,
    /// Straight on the upgraded connection.
    Raw,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Raw => "raw",
        }
    }
}

/// Answers a request on the tunnel path: 400 if it is not a ggrokd handshake (WebSocket or raw)
/// or speaks no protocol version in common, 401 if the token is wrong (before any upgrade), else
/// 101 and a session task.
pub fn accept(state: &Arc<State>, peer: SocketAddr, mut req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let upgrade = ggrok_proto::headers::upgrade_protocol(headers).filter(|_| req.method() == Method::GET);
    let transport = match upgrade {
        Some(p) if p.eq_ignore_ascii_case("websocket") && headers.contains_key(header::SEC_WEBSOCKET_KEY) => {
            Transport::WebSocket
        }
        Some(p) if p.eq_ignore_ascii_case(RAW_TRANSPORT) => Transport::Raw,
        _ => {
            debug!(%peer, "non-WebSocket request on the tunnel path");
            state.metrics.rejected(Rejection::NotWebsocket);
            return body::text(
                StatusCode::BAD_REQUEST,
                "ggrok: this is the tunnel endpoint; it expects a WebSocket upgrade from ggrokd",
            );
        }
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
    let config = state.config();
    let client = match (token, &config.anonymous_hosts) {
        (Some(t), _) => authenticate(&config.clients, t).cloned(),
        // Each anonymous client is a client of its own: none can take over another's hosts.
        (None, Some(hosts)) => {
            Some(auth::anonymous(format!("{}{}", auth::ANONYMOUS, state.next_anonymous_id()), hosts.clone()))
        }
        (None, None) => None,
    };
    drop(config);
    let Some(client) = client else {
        warn!(%peer, "tunnel client refused: unauthorized (missing or unknown token)");
        state.metrics.rejected(Rejection::Unauthorized);
        let mut resp =
            body::text(StatusCode::UNAUTHORIZED, "ggrok: unauthorized: the token is missing or unknown");
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return resp;
    };
    let accept_key = headers.get(header::SEC_WEBSOCKET_KEY).map(|key| derive_accept_key(key.as_bytes()));
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state2 = state.clone();
    state.sessions.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => return debug!(%peer, "tunnel upgrade failed: {e}"),
        };
        match transport {
            Transport::WebSocket => {
                let config = Some(ggrok_proto::wsio::config());
                let ws = WebSocketStream::from_raw_socket(upgraded, Role::Server, config).await;
                serve(state2, client, peer, protocol, transport, ggrok_proto::wsio::ws_io(ws)).await;
            }
            Transport::Raw => serve(state2, client, peer, protocol, transport, upgraded).await,
        }
    });
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(HEADER_PROTOCOL, protocol);
    resp = match (transport, accept_key) {
        (Transport::WebSocket, Some(key)) => {
            resp.header(header::UPGRADE, "websocket").header(header::SEC_WEBSOCKET_ACCEPT, key)
        }
        _ => resp.header(header::UPGRADE, RAW_TRANSPORT),
    };
    resp.body(body::empty()).expect("static response parts are valid")
}

async fn serve<IO>(
    state: Arc<State>,
    client: ClientEntry,
    peer: SocketAddr,
    protocol: u32,
    transport: Transport,
    io: IO,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let id = state.next_session_id();
    let worker = crate::workers::current();
    let setup = tokio::time::timeout(
        state.config().limits.handshake_timeout,
        open(io, state.config().keepalive_interval, state.budget.windows()),
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
    let codec = ServerCodec::with_max_message(state.config().limits.max_control_message);
    let mut control = Framed::new(control, codec);
    let ended = |done: Result<Result<(), h2c::Ended>, tokio::task::JoinError>| match done {
        Ok(Ok(())) => "connection closed".to_owned(),
        Ok(Err(e)) => format!("connection failed: {}", ggrok_proto::headers::error_chain(&e)),
        Err(e) => format!("connection task failed: {e}"),
    };
    let ids = control::Ids { session: id, protocol, worker, client: &client };
    let greeting = tokio::select! {
        g = control::greet(&state, ids, &mut control) => g,
        done = &mut connection => Err(ended(done)),
        _ = state.close_sessions.cancelled() => Err("server shutting down".to_owned()),
    };
    let greeting = match greeting {
        Ok(g) => g,
        Err(why) => {
            connection.abort();
            return info!(session = id, client = %client.name, %peer, "tunnel client disconnected: {why}");
        }
    };
    let (notify, queued) = tokio::sync::mpsc::unbounded_channel();
    let session = Arc::new(Session::new(session::Parts {
        id,
        client: client.name.clone(),
        token_sha256: client.token_sha256,
        protocol,
        worker,
        connection: greeting.connection,
        sender,
        max_streams: state.config().limits.max_streams_per_session,
        notify,
    }));
    let joined = state.daemons.join(&session, greeting.daemon.as_deref());
    let daemon = joined.daemon;
    info!(
        session = id,
        client = %client.name,
        %peer,
        worker,
        transport = transport.name(),
        protocol,
        daemon = greeting.daemon,
        connection = greeting.connection,
        sessions = joined.sessions,
        "tunnel client connected"
    );
    if let Some(ghost) = joined.ghost {
        info!(
            session = id,
            ghost = ghost.id,
            "the daemon dialled this connection again: closing the old one"
        );
        ghost.close();
    }
    let _connected = state.metrics.session_connected();
    forget_unclaimed_later(&state, &client.name, id);
    let mut connection_done = false;
    let mut why = tokio::select! {
        why = control::serve(&state, &client, &session, &daemon, &mut control, queued) => why,
        done = &mut connection => {
            connection_done = true;
            ended(done)
        }
        why = session.closed() => why,
        _ = state.close_sessions.cancelled() => "server shutting down".to_owned(),
    };
    // When this was the daemon's last session, new requests for its hosts now get "offline,
    // reconnecting" until it is back; else its other sessions go on serving them.
    let released = if state.daemons.leave(&daemon, id) {
        let ports = state.ports.remove_owner(daemon.id());
        if !ports.is_empty() {
            info!(session = id, client = %client.name, ?ports, "TCP ports offline (still bound for the offline grace)");
        }
        let hosts = state.registry.remove_owner(daemon.id());
        standby::Standby::freed(&state, &hosts);
        hosts
    } else {
        Vec::new()
    };
    let requests = session.requests();
    drop(session);
    drop(control);
    if !connection_done {
        info!(session = id, client = %client.name, hosts = released.len(), "tunnel client going away ({why}); requests in flight continue");
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
    info!(session = id, client = %client.name, hosts_offline = released.len(), requests, "tunnel client disconnected: {why}");
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
                state.ports.forget_offline(&client, started);
                tracing::debug!(session, client, "forgot hosts not claimed again");
            }
            _ = state.shutdown.cancelled() => {}
        }
    });
}

type Connection = tokio::task::JoinHandle<Result<(), h2c::Ended>>;

/// How long a connection whose control stream ended may go on carrying requests in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// HTTP/2 handshake over the tunnel's bytes, then the control stream.
async fn open<IO>(
    io: IO,
    keepalive: Duration,
    windows: tokio::sync::watch::Receiver<u32>,
) -> anyhow::Result<(h2c::Sender, h2c::StreamIo, Connection)>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let settings = h2c::Settings {
        stream_window: *windows.borrow(),
        connection_window: tuning::CONNECTION_WINDOW,
        max_frame_size: tuning::MAX_FRAME_SIZE,
    };
    let (sender, connection) = h2c::handshake(io, &settings).await.context("HTTP/2 handshake")?;
    let connection = tokio::spawn(h2c::drive(connection, keepalive, windows));

    // A plain request first: its answer arrives after the daemon's SETTINGS, which must enable
    // extended CONNECT before the control stream can be opened.
    let hello = Request::builder()
        .uri(format!("http://{CONTROL_AUTHORITY}/"))
        .version(Version::HTTP_2)
        .body(body::empty())?;
    sender.send(hello).await.context("first request")?;

    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{CONTROL_AUTHORITY}/"))
        .version(Version::HTTP_2)
        .body(())?;
    req.extensions_mut().insert(Protocol::from_static(CONTROL_PROTOCOL));
    match sender.upgrade(req).await.context("opening the control stream")? {
        Ok((_, control)) => Ok((sender, control, connection)),
        Err(resp) => bail!("the daemon answered {} to the control stream", resp.status()),
    }
}
