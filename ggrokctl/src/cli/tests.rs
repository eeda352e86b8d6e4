//! Tests of `cli`.

use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_well_formed() {
    Cli::command().debug_assert();
}

fn command(args: &[&str]) -> Result<Command, String> {
    Cli::try_parse_from(args).map_err(|e| e.to_string())?.command.add_or_remove()
}

#[test]
fn tcp_add_and_remove() {
    let add = |host: &str, local: &str| Command::Add {
        host: host.into(),
        local: local.into(),
        host_header: None,
        save: true,
        basic_auth: vec![],
        allow_ips: vec![],
        deny_ips: vec![],
        proxy_protocol: false,
        ca_file: None,
        tls_skip_verify: false,
    };
    assert_eq!(command(&["ggrokctl", "add", "--tcp", "5432"]), Ok(add("tcp:0", "5432")));
    let Ok(Command::Add { host, proxy_protocol, .. }) =
        command(&["ggrokctl", "add", "--tcp", "20001", "5432", "--proxy-protocol"])
    else {
        panic!("an add")
    };
    assert_eq!((host.as_str(), proxy_protocol), ("tcp:20001", true));
    assert!(command(&["ggrokctl", "add", "a.test", "80", "--proxy-protocol"]).is_err(), "TCP only");
    assert_eq!(command(&["ggrokctl", "add", "--tcp", "20001", "db:5432"]), Ok(add("tcp:20001", "db:5432")));
    assert_eq!(command(&["ggrokctl", "add", "a.test", "80"]), Ok(add("a.test", "80")));
    assert!(command(&["ggrokctl", "add", "--tcp", "x", "1"]).unwrap_err().contains("expected a port"));
    assert!(command(&["ggrokctl", "add", "a.test"]).unwrap_err().contains("local service is missing"));
    assert_eq!(command(&["ggrokctl", "add", "8080"]), Ok(add("", "8080")), "a random name");
    assert_eq!(command(&["ggrokctl", "add", "http://localhost:3000"]), Ok(add("", "http://localhost:3000")));
    assert_eq!(command(&["ggrokctl", "add", "myapp", "80"]), Ok(add("myapp", "80")), "a bare name");
    assert!(command(&["ggrokctl", "add", "--tcp", "--rewrite-host", "1"]).is_err());
    let remove = Command::Remove { host: "tcp:20001".into(), save: false };
    assert_eq!(command(&["ggrokctl", "remove", "--tcp", "20001", "--no-save"]), Ok(remove));
    assert!(command(&["ggrokctl", "remove"]).is_err());
    assert!(command(&["ggrokctl", "remove", "a.test", "--tcp", "1"]).is_err());
}

#[test]
fn access_flags_hash_passwords_here() {
    let args = [
        "ggrokctl",
        "add",
        "a.test",
        "80",
        "--basic-auth",
        "alice:pw1",
        "--basic-auth",
        "bob:pw2",
        "--allow-ip",
        "127.0.0.2",
        "--deny-ip",
        "10.0.0.0/8",
    ];
    let Ok(Command::Add { basic_auth, allow_ips, deny_ips, .. }) = command(&args) else { panic!() };
    assert_eq!(basic_auth.len(), 2);
    assert!(basic_auth[0].starts_with("alice:$argon2id$") && basic_auth[1].starts_with("bob:$argon2id$"));
    assert!(!basic_auth.concat().contains("pw1"));
    assert_eq!((allow_ips, deny_ips), (vec!["127.0.0.2".to_owned()], vec!["10.0.0.0/8".to_owned()]));
    let tcp = ["ggrokctl", "add", "--tcp", "22", "--allow-ip", "127.0.0.1"];
    assert!(matches!(command(&tcp), Ok(Command::Add { allow_ips, .. }) if allow_ips.len() == 1));
    assert!(command(&["ggrokctl", "add", "--tcp", "22", "--basic-auth", "a:b"]).is_err());
    assert!(command(&["ggrokctl", "add", "a.test", "80", "--basic-auth", "nopassword"]).is_err());
}

#[test]
fn logs_arguments() {
    let cli = Cli::try_parse_from(["ggrokctl", "logs", "-f", "-n", "all", "a.test"]).unwrap();
    let Sub::Logs { host, follow, lines } = cli.command else { panic!("not logs") };
    assert_eq!((host.as_deref(), follow, lines), (Some("a.test"), true, Count(None)));
    let cli = Cli::try_parse_from(["ggrokctl", "logs"]).unwrap();
    assert!(matches!(cli.command, Sub::Logs { follow: false, lines: Count(Some(20)), .. }));
    assert!(Cli::try_parse_from(["ggrokctl", "logs", "-n", "lots"]).is_err());
}

#[test]
fn a_wrong_local_is_a_usage_error_quoting_it_once() {
    let cases = [
        (&["add", "foo.alice.test", "99999"][..], "\"99999\" is not a port number (1-65535)"),
        (&["add", "foo.alice.test", "0"], "\"0\" is not a port number (1-65535)"),
        (
            &["add", "foo.alice.test", "abc"],
            "\"abc\" is not a local address: give a port (8080), host:port or http://host:port",
        ),
        (
            &["add", "foo.alice.test", "ftp://x:21"],
            "\"ftp://x:21\": a local service is http://, https:// or h2c://",
        ),
        (&["add", "99999"], "\"99999\" is not a port number (1-65535)"),
        (
            &["add", "--tcp", "20001", "http://db:5432"],
            "\"http://db:5432\": a TCP tunnel's local service is a port or host:port, without a scheme",
        ),
        (&["add", "--tcp", "99999"], "\"99999\" is not a port number (1-65535)"),
        (
            &["add", "a.test", "8080", "--tls-skip-verify"],
            "--tls-skip-verify: applies to https:// local services only, not \"8080\"",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = ["ggrokctl"].iter().chain(args).copied().collect();
        assert_eq!(command(&args), Err(expected.to_owned()), "{args:?}");
    }
}

fn help(subcommand: &str) -> String {
    let mut cli = Cli::command();
    cli.find_subcommand_mut(subcommand).unwrap().render_long_help().to_string()
}

#[test]
fn add_help_agrees_with_itself() {
    let text = help("add");
    let usage = text.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(usage.ends_with("ggrokctl add [OPTIONS] [HOST|NAME] <LOCAL>"), "{text}");
    assert!(text.contains("ggrokctl add --tcp [OPTIONS] [PORT] <LOCAL>"), "{text}");
    // The arguments as the usage has them: the first optional, LOCAL required.
    assert!(text.contains("\n  [HOST|NAME|PORT]\n") && text.contains("\n  <LOCAL>\n"), "{text}");
    assert!(!text.contains("ggrokd.toml keys"), "the flags exist: {text}");
    assert!(text.contains("--ca-file") && text.contains("--tls-skip-verify"), "{text}");
    // And the parser agrees: one argument is LOCAL.
    let Sub::Add { host, local, .. } = Cli::try_parse_from(["ggrokctl", "add", "8080"]).unwrap().command
    else {
        panic!("not add")
    };
    assert_eq!((host, local.as_str()), (None, "8080"));
    assert!(Cli::try_parse_from(["ggrokctl", "add"]).is_err(), "LOCAL is required");
}

#[test]
fn remove_usage_shows_both_forms() {
    let usage = |text: &str| {
        text.lines().skip_while(|l| !l.starts_with("Usage:")).take(2).collect::<Vec<_>>().join("\n")
    };
    let expected = "Usage: ggrokctl remove [OPTIONS] <HOST>\n       ggrokctl remove [OPTIONS] --tcp <PORT>";
    assert_eq!(usage(&help("remove")), expected);
    // The error for a missing argument shows the same.
    let err = Cli::try_parse_from(["ggrokctl", "remove"]).err().unwrap().render().to_string();
    assert!(err.contains(expected), "{err}");
}
