//! The daemon's end of the control stream: greet the server, claim every tunnel's host, send the
//! claims and releases that `ggrokctl` and reloads make later, and record the server's answers.

use crate::daemon::Daemon;
use crate::tunnels::TunnelState;
use futures_util::{SinkExt, StreamExt};
use ggrok_proto::control::{ClientCodec, ClientMessage, ServerMessage};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

/// Why [`run`] ends when the daemon itself closed the stream (shutdown).
pub const DETACHED: &str = "closed by the daemon";

/// Runs the control stream until it ends; returns why it ended.
pub async fn run(daemon: Arc<Daemon>, stream: Upgraded) -> String {
    let (sender, outgoing) = mpsc::unbounded_channel();
    let mut generation = None;
    let framed = Framed::new(TokioIo::new(stream), ClientCodec::default());
    let why = converse(&daemon, framed, sender, outgoing, &mut generation).await;
    if generation.is_some() {
        daemon.detach_control(generation);
    }
    why
}

async fn converse(
    daemon: &Daemon,
    mut control: Framed<TokioIo<Upgraded>, ClientCodec>,
    sender: mpsc::UnboundedSender<ClientMessage>,
    mut outgoing: mpsc::UnboundedReceiver<ClientMessage>,
    generation: &mut Option<u64>,
) -> String {
    match control.next().await {
        Some(Ok(ServerMessage::Hello { version, client, session, .. })) => {
            if version != 1 {
                warn!(version, "server greeted with protocol version {version}, this daemon asked for 1");
            }
            info!(client, session, "authenticated with the server");
        }
        Some(Ok(other)) => return format!("unexpected first control message: {other:?}"),
        Some(Err(e)) => return e.to_string(),
        None => return "control stream closed before the greeting".into(),
    }
    let hello = ClientMessage::Hello {
        version: 1,
        agent: concat!("ggrokd/", env!("CARGO_PKG_VERSION")).into(),
        daemon: None,
        connection: None,
    };
    if let Err(e) = control.send(hello).await {
        return e.to_string();
    }
    // Attach before listing the tunnels: a tunnel added meanwhile is either listed or sent.
    *generation = Some(daemon.attach_control(sender));
    for tunnel in daemon.tunnels.all() {
        if let Err(e) = control.feed(ClientMessage::Register { host: tunnel.spec.host.to_string() }).await {
            return e.to_string();
        }
    }
    if let Err(e) = control.flush().await {
        return e.to_string();
    }
    loop {
        let message = tokio::select! {
            incoming = control.next() => match incoming {
                None => return "control stream closed".into(),
                Some(Err(e)) => return e.to_string(),
                Some(Ok(m)) => m,
            },
            out = outgoing.recv() => {
                // None: the daemon detached the stream (shutdown); closing it tells the server.
                let Some(out) = out else { return DETACHED.into() };
                if let Err(e) = control.send(out).await {
                    return e.to_string();
                }
                continue;
            }
        };
        match message {
            ServerMessage::Registered { host } => match daemon.tunnels.get(&host) {
                Some(t) => {
                    t.set_state(TunnelState::Online);
                    info!(host, local = %t.spec.local, "tunnel online");
                }
                None => {
                    // Removed while the claim was under way: release it again.
                    let _ = control.send(ClientMessage::Unregister { host }).await;
                }
            },
            ServerMessage::Refused { host, reason } => {
                warn!(host, "tunnel refused by the server: {reason}");
                if let Some(t) = daemon.tunnels.get(&host) {
                    t.set_state(TunnelState::Refused(reason));
                }
            }
            ServerMessage::Unregistered { host } => info!(host, "tunnel released on the server"),
            ServerMessage::Error { message } => warn!("server reported a control error: {message}"),
            ServerMessage::Hello { .. } => warn!("server greeted twice; ignored"),
            other => debug!("control message ignored: {other:?}"),
        }
    }
}
