//! A real ACME CA for one test: Debian's `pebble` (installed by `.ci/setup`) on free loopback
//! ports, with `pebble-challtestsrv` as its DNS server answering 127.0.0.1 for every name, so the
//! CA validates names such as `app.acme.test` against the ggrok-server under test. Pebble's own
//! HTTPS listener presents a certificate from a throwaway [`TestCa`]; the server under test trusts
//! it with `[acme] ca_file`. Both processes are killed when the [`Pebble`] is dropped.
//!
//! Pebble dials fixed ports to validate (HTTP-01 on `http_port`, TLS-ALPN-01 on `tls_port`), so
//! the ports are picked first ([`free_ports`]) and the server under test listens on them.

use crate::process::Process;
use crate::tls::{TestCa, https_get};
use http::StatusCode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// `n` distinct free ports on 127.0.0.1 (bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// A running Pebble and its DNS server.
pub struct Pebble {
    /// Its files: its config, its listener's certificate, `ca.pem`.
    pub dir: TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The CA of Pebble's own HTTPS listener (for `[acme] ca_file`).
    pub ca_file: PathBuf,
    /// The root that signs the certificates Pebble issues (from its management listener).
    pub root: CertificateDer<'static>,
    /// Pebble's log.
    pub process: Process,
    _dns: Process,
}

/// What Pebble validates against, and how long its certificates last.
pub struct Options {
    /// The port HTTP-01 validations dial (the server's plain listener).
    pub http_port: u16,
    /// The port TLS-ALPN-01 validations dial (the server's TLS listener).
    pub tls_port: u16,
    /// The validity of issued certificates, in seconds (Pebble's default: 5 years).
    pub validity: Option<u64>,
}

impl Pebble {
    /// Starts challtestsrv and Pebble, and waits until Pebble serves its root.
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let ca_file = ca.write_ca(dir.path());
        let (cert, key) = ca.issue(dir.path(), "pebble", &["localhost", "127.0.0.1"]);
        let ports = free_ports(4);
        let (dns, dns_management, acme, management) = (ports[0], ports[1], ports[2], ports[3]);
        let dns_process = Process::spawn(
            Path::new("/usr/bin/pebble-challtestsrv"),
            &[
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_management}"),
            ],
            &[],
        );
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": options.http_port,
                "tlsPort": options.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(seconds) = options.validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        // Pebble logs to stdout: the harness reads stderr.
        let script =
            format!("exec /usr/bin/pebble -config {} -dnsserver 127.0.0.1:{dns} 1>&2", config_path.display());
        let process = Process::spawn(
            Path::new("/bin/sh"),
            &["-c", &script],
            &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0"), ("PEBBLE_AUTHZREUSE", "0")],
        );
        let root = Self::fetch_root(&ca, SocketAddr::from(([127, 0, 0, 1], management)), &process).await;
        Self {
            dir,
            directory: format!("https://127.0.0.1:{acme}/dir"),
            ca_file,
            root,
            process,
            _dns: dns_process,
        }
    }

    /// Polls the management listener until it serves the root (Pebble makes a new one each run).
    async fn fetch_root(ca: &TestCa, management: SocketAddr, process: &Process) -> CertificateDer<'static> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((StatusCode::OK, body, _)) =
                https_get(ca.client_config(), management, "127.0.0.1", "127.0.0.1", "/roots/0").await
            {
                return CertificateDer::from_pem_slice(body.as_bytes()).expect("Pebble's root is PEM");
            }
            assert!(Instant::now() < deadline, "Pebble did not serve its root; its log:\n{}", process.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A TLS client trusting only the certificates Pebble issues.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// The `[acme]` table for a server of this Pebble, with `extra` lines and a cache in `cache`.
    pub fn acme_config(&self, cache: &Path, extra: &str) -> String {
        format!(
            "[acme]\ndirectory = {:?}\nca_file = {:?}\ncache_dir = {:?}\nemail = \"ops@acme.test\"\n{extra}\n",
            self.directory, self.ca_file, cache
        )
    }
}
