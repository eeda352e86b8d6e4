//! The daemon's end of the control stream: greet the server, claim every tunnel's host, and
//! record and log the server's answers.

use crate::tunnels::{TunnelState, Tunnels};
use futures_util::{SinkExt, StreamExt};
use ggrok_proto::PROTOCOL_VERSION;
use ggrok_proto::control::{ClientCodec, ClientMessage, ServerMessage};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_util::codec::Framed;
use tracing::{info, warn};

/// Runs the control stream until it ends; returns why it ended.
pub async fn run(tunnels: Arc<Tunnels>, stream: Upgraded) -> String {
    let mut control = Framed::new(TokioIo::new(stream), ClientCodec::default());
    match control.next().await {
        Some(Ok(ServerMessage::Hello { version, client, session })) => {
            if version != PROTOCOL_VERSION {
                warn!(version, "server speaks protocol version {version}, this daemon {PROTOCOL_VERSION}");
            }
            info!(client, session, "authenticated with the server");
        }
        Some(Ok(other)) => return format!("unexpected first control message: {other:?}"),
        Some(Err(e)) => return e.to_string(),
        None => return "control stream closed before the greeting".into(),
    }
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        agent: concat!("ggrokd/", env!("CARGO_PKG_VERSION")).into(),
    };
    if let Err(e) = control.send(hello).await {
        return e.to_string();
    }
    for tunnel in tunnels.all() {
        let claim = ClientMessage::Register { host: tunnel.spec.host.to_string() };
        if let Err(e) = control.feed(claim).await {
            return e.to_string();
        }
    }
    if let Err(e) = control.flush().await {
        return e.to_string();
    }
    loop {
        let message = match control.next().await {
            None => return "control stream closed".into(),
            Some(Err(e)) => return e.to_string(),
            Some(Ok(m)) => m,
        };
        match message {
            ServerMessage::Registered { host } => set_state(&tunnels, &host, TunnelState::Online, |t| {
                info!(host, local = %t.spec.local, "tunnel online");
            }),
            ServerMessage::Refused { host, reason } => {
                set_state(&tunnels, &host, TunnelState::Refused(reason.clone()), |_| {
                    warn!(host, "tunnel refused by the server: {reason}");
                })
            }
            ServerMessage::Unregistered { host } => info!(host, "tunnel unregistered"),
            ServerMessage::Error { message } => warn!("server reported a control error: {message}"),
            ServerMessage::Hello { .. } => warn!("server greeted twice; ignored"),
        }
    }
}

fn set_state(tunnels: &Tunnels, host: &str, state: TunnelState, log: impl FnOnce(&crate::tunnels::Tunnel)) {
    match tunnels.get(host) {
        Some(t) => {
            *t.state.write().expect("tunnel state lock") = state;
            log(&t);
        }
        None => warn!(host, "server answered for a host this daemon does not hold"),
    }
}
