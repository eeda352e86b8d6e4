//! `cargo xtask demo`: a working tunnel on loopback with nothing to set up.

use anyhow::Context;
use bytes::Bytes;
use ggrok_tests::bins::bin;
use ggrok_tests::process::Process;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;

const HOST: &str = "demo.localhost";
const TOKEN: &str = "demo-token-not-secret-0001";

#[tokio::main]
pub async fn run(port: Option<&str>) -> anyhow::Result<()> {
    eprintln!("building ggrok-server and ggrokd ...");
    let (server_bin, daemon_bin) = (bin("ggrok-server"), bin("ggrokd"));
    let local = sample_service().await?;
    let dir = std::env::temp_dir().join(format!("ggrok-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let listen = pick_listen_addr(port)?;
    let server_toml = dir.join("server.toml");
    std::fs::write(
        &server_toml,
        format!(
            "listen = \"{listen}\"\n\n[[client]]\nname = \"demo\"\ntoken = \"{TOKEN}\"\nhosts = [\"*.localhost\"]\n"
        ),
    )?;
    let server = Process::spawn_echo(&server_bin, &["--config", server_toml.to_str().unwrap()], &[], true);
    let line = server.wait_for(&["listening on"]);
    let addr: SocketAddr = ggrok_tests::process::listening_address(&line).context("server address")?;

    let daemon_toml = dir.join("ggrokd.toml");
    std::fs::write(
        &daemon_toml,
        format!(
            "server = \"ws://{addr}\"\ntoken = \"{TOKEN}\"\n\n[[tunnel]]\nhost = \"{HOST}\"\nlocal = \"{}\"\n",
            local.port()
        ),
    )?;
    let daemon = Process::spawn_echo(&daemon_bin, &["--config", daemon_toml.to_str().unwrap()], &[], true);
    daemon.wait_for(&["tunnel online", HOST]);

    println!();
    println!("ggrok demo is up: {HOST} is served by the sample service on {local} through the tunnel.");
    println!("Try it:");
    println!("    curl http://{HOST}:{}/", addr.port());
    println!("    curl -H 'Host: {HOST}' http://{addr}/hello?from=curl");
    println!("Configs: {}  {}", server_toml.display(), daemon_toml.display());
    println!("Ctrl-C stops everything.");
    println!();

    tokio::signal::ctrl_c().await?;
    eprintln!("stopping ...");
    daemon.terminate();
    server.terminate();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// 127.0.0.1:PORT if given, else 127.0.0.1:8080 when free, else any free port.
fn pick_listen_addr(port: Option<&str>) -> anyhow::Result<SocketAddr> {
    if let Some(p) = port {
        let p: u16 = p.parse().with_context(|| format!("{p:?} is not a port"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    let preferred = SocketAddr::from(([127, 0, 0, 1], 8080));
    Ok(match std::net::TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    })
}

/// A small local HTTP service that says hello and shows what it received.
async fn sample_service() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| hello(addr, req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn hello(addr: SocketAddr, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut text = format!("Hello from the sample service on {addr}, reached through ggrok.\n\n");
    text.push_str(&format!("{} {}\n", req.method(), req.uri()));
    for (name, value) in req.headers() {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .expect("valid response"))
}
