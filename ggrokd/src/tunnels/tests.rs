//! Tests of `tunnels`.

use super::*;
use crate::config::LocalAddr;
use ggrok_proto::host::HostPattern;

fn spec(host: &str, port: &str) -> TunnelSpec {
    TunnelSpec {
        host: HostPattern::parse(host).unwrap().into(),
        local: LocalAddr::parse(port).unwrap(),
        local_http: Default::default(),
        rewrite_host: false,
        proxy_protocol: false,
        access: Default::default(),
    }
}

fn takeover(t: &Tunnel) -> Option<bool> {
    match t.claim()? {
        TunnelOp::Claim { takeover, .. } => Some(takeover),
        TunnelOp::Release { .. } => unreachable!(),
    }
}

#[test]
fn exact_before_wildcard() {
    let t = Tunnels::new(&[spec("*.a.test", "1"), spec("x.a.test", "2")]);
    assert_eq!(t.lookup("x.a.test").unwrap().spec.local.authority, "localhost:2");
    assert_eq!(t.lookup("y.a.test").unwrap().spec.local.authority, "localhost:1");
    assert!(t.lookup("a.test").is_none());
    assert_eq!(t.all().len(), 2);
}

#[test]
fn insert_refuses_duplicates_and_replace_keeps_state() {
    let t = Tunnels::default();
    let first = t.insert(spec("a.test", "1"), true).unwrap();
    assert!(t.insert(spec("a.test", "2"), true).is_none());
    first.claimed(0);
    first.stats.started();
    let second = t.replace(spec("a.test", "2"), true);
    assert_eq!(second.state(), TunnelState::Online);
    assert_eq!(takeover(&second), Some(false), "online: no new claim, no takeover");
    // The counters carry over, shared with requests in flight on the old spec.
    assert!(Arc::ptr_eq(&first.stats, &second.stats));
    assert_eq!(second.info().requests, 1);
    assert_eq!(t.get("a.test").unwrap().spec.local.authority, "localhost:2");
    // The old Arc, as held by a request in flight, still says where it was going.
    assert_eq!(first.spec.local.authority, "localhost:1");
    assert!(!t.remove_exactly(&first), "not the one in the table any more");
    assert!(t.holds(&second));
    assert!(t.remove_exactly(&second));
    assert!(t.get("a.test").is_none());
}

#[test]
fn info_reports_state_counters_and_errors() {
    let t = Tunnels::default();
    let tunnel = t.insert(spec("a.test", "1"), false).unwrap();
    assert_eq!(tunnel.info().state, TunnelStatus::Connecting);
    tunnel.claimed(0);
    tunnel.stats.started();
    tunnel.record_error("connection refused".into());
    let info = tunnel.info();
    assert_eq!((info.state, info.requests, info.errors, info.saved), (TunnelStatus::Error, 1, 1, false));
    assert_eq!(info.last_error.unwrap().message, "connection refused");
    tunnel.record_ok();
    assert_eq!(tunnel.info().state, TunnelStatus::Online);
    tunnel.mark_saved();
    assert!(tunnel.info().saved);
    tunnel.displaced("taken over by ggrokd on laptop".into());
    let info = tunnel.info();
    assert_eq!(
        (info.state, info.reason.as_deref()),
        (TunnelStatus::Displaced, Some("taken over by ggrokd on laptop"))
    );
}

#[test]
fn online_while_any_connection_has_it() {
    let t = Tunnels::new(&[spec("a.test", "1")]);
    let a = t.get("a.test").unwrap();
    assert!(a.claimed(0), "came online");
    assert!(!a.claimed(2), "already online");
    t.link_down(0);
    assert_eq!(a.state(), TunnelState::Online, "connection 2 still carries it");
    assert!(a.link_down(2), "went offline with the last connection");
    assert_eq!(a.state(), TunnelState::Connecting);
}

#[test]
fn a_refusal_is_reported_once_and_a_later_acceptance_wins() {
    let a = Tunnels::new(&[spec("a.test", "1")]).get("a.test").unwrap();
    assert!(a.refused(0, "held by bob".into()));
    assert!(!a.refused(1, "held by bob".into()), "the same refusal on another connection");
    assert_eq!(a.state(), TunnelState::Refused("held by bob".into()));
    a.claimed(1);
    assert_eq!(a.state(), TunnelState::Online);
}

/// The takeover rule through the table: new and changed tunnels are fresh.
#[test]
fn added_and_changed_tunnels_take_over_reconnects_do_not() {
    let t = Tunnels::new(&[spec("a.test", "1")]);
    let a = t.get("a.test").unwrap();
    assert_eq!(takeover(&a), Some(true), "first claim after start");
    a.claimed(0);
    t.link_down(0);
    assert_eq!(takeover(&a), Some(false), "reconnects do not take it back");
    assert!(a.displaced("taken over".into()));
    assert!(!a.displaced("taken over".into()), "reported once");
    assert_eq!(a.claim(), None);
    assert!(a.refresh());
    assert_eq!(takeover(&a), Some(true), "a reload makes it fresh");
    let b = t.insert(spec("b.test", "1"), false).unwrap();
    assert_eq!(takeover(&b), Some(true), "added");
    b.displaced("taken over".into());
    let changed = t.replace(spec("b.test", "2"), true);
    assert_eq!(takeover(&changed), Some(true), "changed by a reload");
}
