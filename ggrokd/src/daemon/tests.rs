use super::*;
use crate::coverage;
use std::path::Path;
use tokio_util::sync::CancellationToken;

fn daemon(extra: &str) -> Daemon {
    let text = format!("server = \"ws://t\"\n{extra}");
    Daemon::new(&DaemonConfig::parse(Path::new("g.toml"), &text).unwrap(), "d".into())
}

fn t() -> ServerUrl {
    ServerUrl::parse("ws://t").unwrap()
}

/// How many links the plan wants to `ws://t`.
fn wanted(d: &Daemon) -> u32 {
    d.wanted_links().borrow().iter().find(|(s, _)| *s == t()).map_or(0, |(_, n)| *n)
}

fn link(d: &Daemon, index: u32) -> Arc<Link> {
    let link = Arc::new(Link::new(index, t(), CancellationToken::new()));
    d.add_link(link.clone());
    link.connected("websocket", 2);
    link
}

#[test]
fn auto_starts_one_then_follows_the_hello() {
    let d = daemon("");
    assert_eq!(wanted(&d), 1, "connection 0 first");
    d.server_greeted(&t(), 2, Some(3));
    assert_eq!(wanted(&d), 3);
    d.server_greeted(&t(), 2, Some(12));
    assert_eq!(wanted(&d), 4, "at most 4");
    d.server_greeted(&t(), 1, None);
    assert_eq!(wanted(&d), 1, "a version-1 server");
}

#[test]
fn a_fixed_number_starts_at_once_but_not_against_version_one() {
    let d = daemon("connections = 3\n");
    assert_eq!(wanted(&d), 3);
    d.server_greeted(&t(), 2, Some(1));
    assert_eq!(wanted(&d), 3, "fixed: whatever the workers");
    d.server_greeted(&t(), 1, None);
    assert_eq!(wanted(&d), 1);
    d.server_greeted(&t(), 2, Some(1));
    assert_eq!(wanted(&d), 3, "the server was upgraded");
    d.set_connections(Connections::Fixed(2));
    assert_eq!(wanted(&d), 2, "a reload");
}

#[test]
fn every_listed_server_gets_its_own_links() {
    let text = "server = [\"ws://a\", \"ws://b\"]\nconnections = 2\n";
    let d = Daemon::new(&DaemonConfig::parse(Path::new("g.toml"), text).unwrap(), "d".into());
    let plan: Vec<_> = d.wanted_links().borrow().iter().map(|(s, n)| (s.authority.clone(), *n)).collect();
    assert_eq!(plan, [("a:80".to_owned(), 2), ("b:80".to_owned(), 2)]);
    let mut endpoints = d.endpoints();
    endpoints.remove(0);
    assert!(d.set_endpoints(endpoints.clone()));
    assert!(!d.set_endpoints(endpoints));
    assert_eq!(d.wanted_links().borrow().len(), 1, "a removed server has no links");
}

#[test]
fn a_link_on_a_held_worker_redials_while_another_is_free() {
    let d = daemon("");
    let links: Vec<_> = (0..3).map(|i| link(&d, i)).collect();
    assert!(d.keep_landing(&links[0], None, Some(1), Some(3)));
    assert!(!d.keep_landing(&links[1], None, Some(1), Some(3)), "worker 1 is link 0's; 0 and 2 are free");
    assert!(d.keep_landing(&links[1], None, Some(0), Some(3)));
    for _ in 0..coverage::MAX_REDIALS {
        links[2].count_redial();
    }
    assert!(d.keep_landing(&links[2], None, Some(1), Some(3)), "out of redials: keep what it got");
    assert_eq!(links[2].worker(), Some(1));
}

#[test]
fn replicas_are_learned_held_and_explored() {
    let d = daemon("replicas = \"all\"\n");
    let a = link(&d, 0);
    a.greeted(1, Some("a".into()), None);
    assert!(d.keep_landing(&a, Some("a"), Some(0), Some(1)));
    assert_eq!(wanted(&d), 2, "one replica known, one link exploring");
    let b = link(&d, 1);
    b.greeted(2, Some("a".into()), None);
    assert!(!d.keep_landing(&b, Some("a"), Some(0), Some(1)), "a is held: explore");
    b.greeted(3, Some("b".into()), None);
    assert!(d.keep_landing(&b, Some("b"), Some(0), Some(1)), "a new replica");
    assert_eq!(wanted(&d), 3, "two replicas, and still exploring");
    let c = link(&d, 2);
    c.greeted(4, Some("a".into()), None);
    for _ in 1..coverage::MAX_REDIALS {
        assert!(!d.keep_landing(&c, Some("a"), Some(0), Some(1)));
    }
    assert!(d.keep_landing(&c, Some("a"), Some(0), Some(1)), "settled");
    assert_eq!(wanted(&d), 2, "one link per replica");
    let status = d.status();
    assert_eq!(status.servers[0].replicas, ["a", "b"]);
    assert_eq!(status.servers[0].known_replicas, ["a", "b"]);
    d.explore_again();
    assert_eq!(wanted(&d), 2, "every replica held: nothing to look for");
    b.down("lost".into(), 1, std::time::SystemTime::now());
    d.explore_again();
    assert_eq!(d.status().servers[0].known_replicas, ["a"], "b is held by none: forgotten");
    assert_eq!(wanted(&d), 2, "a, and one link exploring again");
    d.set_replicas(Replicas::One);
    assert_eq!(wanted(&d), 1, "replicas = \"one\": seen ones only");
}

#[test]
fn replicas_seen_are_covered_without_exploring_by_default() {
    let d = daemon("");
    let a = link(&d, 0);
    a.greeted(1, Some("a".into()), None);
    assert!(d.keep_landing(&a, Some("a"), Some(0), Some(1)));
    assert_eq!(wanted(&d), 1, "no link more to explore");
    let b = link(&d, 1);
    b.greeted(2, Some("b".into()), None);
    assert!(d.keep_landing(&b, Some("b"), Some(0), Some(1)), "seen on a reconnect, say");
    assert_eq!(wanted(&d), 2, "one link per replica seen");
    b.down("lost".into(), 1, std::time::SystemTime::now());
    d.explore_again();
    assert_eq!(wanted(&d), 1, "b forgotten, and not looked for");
}

#[test]
fn the_summary_is_connected_when_any_link_is() {
    let d = daemon("");
    assert_eq!(d.status().connection, LinkState::Connecting, "no link yet");
    let links: Vec<_> = (0..2).map(|i| Arc::new(Link::new(i, t(), CancellationToken::new()))).collect();
    for l in &links {
        d.add_link(l.clone());
    }
    links[0].down("refused".into(), 3, std::time::SystemTime::now());
    let status = d.status();
    assert_eq!((status.connection, status.attempt), (LinkState::Disconnected, 3));
    assert_eq!(status.connections.len(), 2);
    assert_eq!((status.servers[0].up, status.servers[0].connections), (0, 2));
    links[1].connected("raw", 2);
    let status = d.status();
    assert_eq!(status.connection, LinkState::Connected);
    assert_eq!(status.servers[0].state, LinkState::Connected);
    assert_eq!(status.last_error.unwrap().message, "refused");
    d.remove_link(1);
    assert_eq!(d.status().connections.len(), 1);
}

#[test]
fn the_raw_fallback_is_kept_per_endpoint() {
    let d = daemon("");
    let endpoint = d.endpoint(&t()).unwrap();
    assert!(!d.raw_fell_back(&endpoint));
    assert!(d.remember_raw_fallback(&endpoint));
    assert!(!d.remember_raw_fallback(&endpoint), "news only once");
    assert!(d.raw_fell_back(&endpoint));
    let mut other = endpoint.clone();
    other.transport = Transport::Raw;
    assert!(d.set_endpoints(vec![other.clone()]));
    assert!(!d.raw_fell_back(&other), "a new endpoint is tried raw again");
    assert!(!d.raw_fell_back(&endpoint), "forgotten on change");
}
