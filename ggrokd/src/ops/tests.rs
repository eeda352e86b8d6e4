//! The operations against a daemon whose one link is a channel: the test plays the server,
//! answering claims through the same handler the control stream uses.

use super::*;
use crate::config::LocalAddr;
use crate::control::on_event;
use crate::link::Link;
use crate::wire::Event;
use ggrok_proto::host::HostPattern;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = "# mine\nserver = \"ws://t\"\n\n[[tunnel]]\nhost = \"first.test\"\nlocal = \"1\"\n";

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    daemon: Arc<Daemon>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ggrokd.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let daemon = Arc::new(Daemon::new(&DaemonConfig::load(&path).unwrap(), "d".into()));
    Setup { _dir: dir, path, daemon }
}

/// Link 0, connected, its control stream a channel the test reads.
fn connect(daemon: &Daemon) -> mpsc::UnboundedReceiver<TunnelOp> {
    let link = Arc::new(Link::new(0, daemon.endpoints()[0].server.clone(), CancellationToken::new()));
    link.connected("websocket", 2);
    let (tx, rx) = mpsc::unbounded_channel();
    link.attach_control(tx);
    daemon.add_link(link);
    rx
}

fn new_tunnel(host: &str) -> NewTunnel {
    NewTunnel {
        spec: TunnelSpec {
            host: HostPattern::parse(host).unwrap().into(),
            local: LocalAddr::parse("8080").unwrap(),
            local_http: Default::default(),
            rewrite_host: false,
            proxy_protocol: false,
            access: Default::default(),
        },
        local_as_written: "8080".into(),
        save: true,
    }
}

fn file(setup: &Setup) -> String {
    std::fs::read_to_string(&setup.path).unwrap()
}

#[tokio::test]
async fn add_claims_first_and_saves_once_accepted() {
    let s = setup();
    let mut server = connect(&s.daemon);
    let answer = {
        let (daemon, path) = (s.daemon.clone(), s.path.clone());
        tokio::spawn(async move {
            let op = server.recv().await.unwrap();
            assert_eq!(
                op,
                TunnelOp::Claim { host: "new.test".into(), takeover: true, access: Default::default() }
            );
            let saved_before = std::fs::read_to_string(&path).unwrap().contains("new.test");
            on_event(&daemon, 0, Event::Claimed { host: "new.test".into(), port: None, url: None });
            (saved_before, server)
        })
    };
    let added = add(&s.daemon, new_tunnel("new.test")).await.unwrap();
    let (saved_before, mut server) = answer.await.unwrap();
    assert!(!saved_before, "the file was written before the server accepted");
    assert_eq!(added.outcome, AddOutcome::Online);
    assert!(added.tunnel.is_saved());
    assert!(file(&s).starts_with(CONFIG) && file(&s).contains("host = \"new.test\"\nlocal = \"8080\""));
    assert!(server.try_recv().is_err(), "nothing else sent");
}

#[tokio::test]
async fn a_refused_add_leaves_the_file_alone_and_releases_nothing() {
    let s = setup();
    let mut server = connect(&s.daemon);
    let answer = {
        let daemon = s.daemon.clone();
        tokio::spawn(async move {
            let Some(TunnelOp::Claim { host, .. }) = server.recv().await else { panic!("no claim") };
            on_event(&daemon, 0, Event::Refused { host, reason: "held by bob".into() });
            server
        })
    };
    let err = add(&s.daemon, new_tunnel("taken.test")).await.err().unwrap();
    assert_eq!(err, OpError::Refused("the server refused taken.test: held by bob".into()));
    let mut server = answer.await.unwrap();
    assert_eq!(file(&s), CONFIG);
    assert!(s.daemon.tunnels.get("taken.test").is_none());
    assert!(server.try_recv().is_err(), "a release was sent for a host never registered");
    // A late acceptance on another connection is released there.
    assert_eq!(
        on_event(&s.daemon, 1, Event::Claimed { host: "taken.test".into(), port: None, url: None }),
        Some(TunnelOp::Release { host: "taken.test".into() })
    );
}

#[tokio::test]
async fn an_add_without_a_connection_is_saved_and_pending() {
    let s = setup();
    let added = add(&s.daemon, new_tunnel("later.test")).await.unwrap();
    assert_eq!(added.outcome, AddOutcome::Pending);
    assert!(file(&s).contains("later.test"));
    let mut unsaved = new_tunnel("temp.test");
    unsaved.save = false;
    let added = add(&s.daemon, unsaved).await.unwrap();
    assert!(!added.tunnel.is_saved() && !file(&s).contains("temp.test"));
    let err = add(&s.daemon, new_tunnel("FIRST.test")).await.err().unwrap();
    assert!(matches!(err, OpError::Exists(m) if m.contains("first.test already has a tunnel")));
}

#[tokio::test]
async fn remove_releases_what_the_server_has_and_edits_the_file() {
    let s = setup();
    let mut server = connect(&s.daemon);
    on_event(&s.daemon, 0, Event::Claimed { host: "first.test".into(), port: None, url: None });
    let removed = remove(&s.daemon, &HostPattern::parse("first.test").unwrap().into(), true).await.unwrap();
    assert!(removed.from_file);
    assert!(!file(&s).contains("first.test") && file(&s).contains("# mine"));
    assert_eq!(server.try_recv().unwrap(), TunnelOp::Release { host: "first.test".into() });
    let err = remove(&s.daemon, &HostPattern::parse("first.test").unwrap().into(), true).await.err().unwrap();
    assert!(matches!(err, OpError::NotFound(_)));
}

#[tokio::test]
async fn reload_claims_displaced_tunnels_again_with_takeover() {
    let s = setup();
    let mut server = connect(&s.daemon);
    on_event(&s.daemon, 0, Event::Claimed { host: "first.test".into(), port: None, url: None });
    on_event(&s.daemon, 0, Event::Displaced { host: "first.test".into(), reason: "by laptop".into() });
    std::fs::write(&s.path, format!("{CONFIG}\n[[tunnel]]\nhost = \"second.test\"\nlocal = \"2\"\n"))
        .unwrap();
    let done = reload(&s.daemon).await.unwrap();
    assert_eq!((done.added, done.unchanged, done.reclaimed, done.reconnect), (1, 1, 1, false));
    assert_eq!(done.to_string(), "reloaded: 1 added, 0 removed, 0 changed, 1 unchanged (1 claimed again)");
    let mut sent = vec![server.try_recv().unwrap(), server.try_recv().unwrap()];
    sent.sort_by_key(|op| format!("{op:?}"));
    assert_eq!(
        sent,
        [
            TunnelOp::Claim { host: "first.test".into(), takeover: true, access: Default::default() },
            TunnelOp::Claim { host: "second.test".into(), takeover: true, access: Default::default() }
        ]
    );
    std::fs::write(&s.path, "server = \"ws://t\"\nbroken").unwrap();
    assert!(reload(&s.daemon).await.unwrap_err().contains("nothing changed"));
    assert_eq!(s.daemon.tunnels.all().len(), 2);
}

#[tokio::test]
async fn any_port_is_refused_with_several_servers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ggrokd.toml");
    std::fs::write(&path, "server = [\"ws://a\", \"ws://b\"]\n").unwrap();
    let daemon = Daemon::new(&DaemonConfig::load(&path).unwrap(), "d".into());
    let mut any = new_tunnel("x.test");
    any.spec.host = Public::Tcp(0);
    let err = add(&daemon, any).await.err().expect("refused");
    assert!(
        matches!(&err, OpError::Invalid(m) if m.contains("with several servers") && m.contains("give the port")),
        "{err}"
    );
    assert!(daemon.tunnels.all().is_empty(), "nothing added");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "server = [\"ws://a\", \"ws://b\"]\n");
    // A port given is fine (it waits for the servers).
    let mut given = new_tunnel("x.test");
    given.spec.host = Public::Tcp(20001);
    given.save = false;
    add(&daemon, given).await.expect("a given port is added");
}
