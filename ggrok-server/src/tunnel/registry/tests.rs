//! Tests of `registry`.

use super::*;

#[derive(Debug)]
struct S(u64, &'static str);

impl S {
    /// An owner that is a daemon of its own.
    fn new(id: u64, client: &'static str) -> Arc<Self> {
        Arc::new(S(id, client))
    }
}

fn took_over<S: Owner>(claim: Result<Claim<S>, Refused>) -> Option<u64> {
    match claim {
        Ok(Claim::TookOver(old)) => Some(old.id()),
        _ => None,
    }
}

fn registered<S>(claim: Result<Claim<S>, Refused>) -> bool {
    matches!(claim, Ok(Claim::Registered))
}

fn id<M>(route: Route<S, M>) -> Option<u64> {
    match route {
        Route::Online(s, ..) => Some(s.id()),
        _ => None,
    }
}
impl Owner for S {
    fn id(&self) -> u64 {
        self.0
    }
    fn client(&self) -> &str {
        self.1
    }
    fn identity(&self) -> &str {
        // Each test owner is its own daemon, except ids 100+ which are daemon "d" again.
        if self.0 >= 100 { "d" } else { ["a", "b", "c", "e", "f", "g", "h"][self.0 as usize % 7] }
    }
}

#[test]
fn exact_before_wildcard() {
    let r = Registry::default();
    let (a, b) = (Arc::new(S(1, "alice")), Arc::new(S(2, "alice")));
    r.claim("*.example.com", &a, 100, true, None).unwrap();
    r.claim("api.example.com", &b, 100, true, None).unwrap();
    assert_eq!(id(r.lookup("api.example.com")), Some(2));
    assert_eq!(id(r.lookup("www.example.com")), Some(1));
    assert!(matches!(r.lookup("example.com"), Route::Unknown));
    assert!(matches!(r.lookup("a.b.example.com"), Route::Unknown));
}

#[test]
fn same_client_takes_over_other_client_is_refused() {
    let r = Registry::default();
    let old = Arc::new(S(1, "alice"));
    let new = Arc::new(S(2, "alice"));
    let mallory = Arc::new(S(3, "mallory"));
    assert!(registered(r.claim("a.test", &old, 100, true, None)));
    assert!(registered(r.claim("a.test", &old, 100, true, None)));
    // Another daemon of the same client takes over only when it asks to.
    assert_eq!(
        r.claim("a.test", &new, 100, false, None).unwrap_err(),
        Refused::HeldBySibling("a.test".into())
    );
    assert_eq!(took_over(r.claim("a.test", &new, 100, true, None)), Some(1));
    assert_eq!(r.claim("a.test", &mallory, 100, true, None).unwrap_err(), Refused::Taken("a.test".into()));
    // The old session going away must not take the host from the new one.
    assert!(r.remove_owner(1).is_empty());
    assert_eq!(id(r.lookup("a.test")), Some(2));
    assert!(!r.release("a.test", 3));
    assert!(r.release("a.test", 2));
    assert_eq!(r.online(), 0);
    assert!(matches!(r.lookup("a.test"), Route::Unknown));
}

#[test]
fn a_daemon_that_comes_back_gets_its_hosts_at_once() {
    let r = Registry::default();
    let (before, after) = (S::new(100, "alice"), S::new(101, "alice"));
    r.claim("a.test", &before, 100, true, None).unwrap();
    // The same daemon (identity "d") as a new owner: no takeover, and no sibling refusal.
    assert!(registered(r.claim("a.test", &after, 100, false, None)));
    assert_eq!(id(r.lookup("a.test")), Some(101));
    // The old owner going away leaves the host with the new one.
    assert!(r.remove_owner(100).is_empty());
    assert_eq!(id(r.lookup("a.test")), Some(101));
}

#[test]
fn offline_hosts_are_free_for_any_daemon_of_the_client() {
    let r = Registry::default();
    let (a, b) = (S::new(1, "alice"), S::new(2, "alice"));
    r.claim("a.test", &a, 100, true, None).unwrap();
    r.remove_owner(1);
    assert!(registered(r.claim("a.test", &b, 100, false, None)));
}

#[test]
fn remove_owner_releases_all_its_hosts() {
    let r = Registry::default();
    let a = Arc::new(S(1, "a"));
    let b = Arc::new(S(2, "b"));
    r.claim("x.test", &a, 100, true, None).unwrap();
    r.claim("y.test", &a, 100, true, None).unwrap();
    r.claim("z.test", &b, 100, true, None).unwrap();
    let mut gone = r.remove_owner(1);
    gone.sort();
    assert_eq!(gone, ["x.test", "y.test"]);
    assert_eq!(r.online(), 1);
    assert!(matches!(r.lookup("x.test"), Route::Offline(_)));
    // The same client, or another one, may claim an offline host again.
    r.claim("x.test", &b, 100, true, None).unwrap();
    assert_eq!(id(r.lookup("x.test")), Some(2));
}

#[test]
fn a_client_holds_at_most_its_share_of_hosts() {
    let r = Registry::default();
    let (a, b) = (Arc::new(S(1, "a")), Arc::new(S(2, "a")));
    r.claim("x.test", &a, 2, true, None).unwrap();
    r.claim("y.test", &b, 2, true, None).unwrap();
    let refused = r.claim("z.test", &a, 2, true, None).unwrap_err();
    assert_eq!(refused, Refused::TooMany { client: "a".into(), held: 2 });
    assert!(refused.to_string().contains("max_hosts_per_client"));
    // Claiming again, or taking over its own host, is not a new host.
    assert!(registered(r.claim("x.test", &a, 2, true, None)));
    assert_eq!(took_over(r.claim("x.test", &b, 2, true, None)), Some(1));
}

#[test]
fn offline_hosts_are_forgotten_after_the_grace_period() {
    let r = Registry::new(Duration::ZERO);
    let a = Arc::new(S(1, "a"));
    r.claim("x.test", &a, 100, true, None).unwrap();
    r.remove_owner(1);
    assert!(matches!(r.lookup("x.test"), Route::Unknown));
    r.purge_offline();
    assert!(r.hosts.read().unwrap().is_empty());
}

#[test]
fn a_returning_client_forgets_the_hosts_it_no_longer_serves() {
    let r = Registry::default();
    let (old, other) = (Arc::new(S(1, "a")), Arc::new(S(2, "b")));
    r.claim("kept.test", &old, 100, true, None).unwrap();
    r.claim("dropped.test", &old, 100, true, None).unwrap();
    r.claim("theirs.test", &other, 100, true, None).unwrap();
    r.remove_owner(1);
    r.remove_owner(2);
    let new = Arc::new(S(3, "a"));
    r.claim("kept.test", &new, 100, true, None).unwrap();
    r.forget_offline("a", Instant::now());
    assert_eq!(id(r.lookup("kept.test")), Some(3));
    assert!(matches!(r.lookup("dropped.test"), Route::Unknown));
    assert!(matches!(r.lookup("theirs.test"), Route::Offline(_)));
}

#[test]
fn an_offline_exact_host_falls_back_to_an_online_wildcard() {
    let r = Registry::default();
    let (a, b) = (Arc::new(S(1, "a")), Arc::new(S(2, "a")));
    r.claim("x.test", &a, 100, true, None).unwrap();
    r.claim("*.test", &b, 100, true, None).unwrap();
    r.remove_owner(1);
    assert_eq!(id(r.lookup("x.test")), Some(2));
}

#[test]
fn a_host_keeps_its_meter_while_it_is_known() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let r = Registry::with_meters(OFFLINE_GRACE, move |host: &str| {
        (host.to_owned(), counter.fetch_add(1, Ordering::SeqCst))
    });
    let meter = |route: Route<S, (String, usize)>| match route {
        Route::Online(_, m, _) | Route::Offline(m) => Some(m),
        Route::Unknown => None,
    };
    let (a, b) = (Arc::new(S(1, "a")), Arc::new(S(2, "a")));
    r.claim("*.test", &a, 100, true, None).unwrap();
    assert_eq!(meter(r.lookup("x.test")), Some(("*.test".to_owned(), 0)), "the pattern's meter");
    // Offline, then claimed again by a new session: the same meter.
    r.remove_owner(1);
    assert_eq!(meter(r.lookup("x.test")), Some(("*.test".to_owned(), 0)));
    r.claim("*.test", &b, 100, true, None).unwrap();
    assert_eq!(meter(r.lookup("y.test")), Some(("*.test".to_owned(), 0)));
    // Released and claimed again: a new one.
    assert!(r.release("*.test", 2));
    assert_eq!(meter(r.lookup("x.test")), None);
    r.claim("*.test", &b, 100, true, None).unwrap();
    assert_eq!(meter(r.lookup("x.test")), Some(("*.test".to_owned(), 1)));
    assert_eq!(made.load(Ordering::SeqCst), 2);
}
