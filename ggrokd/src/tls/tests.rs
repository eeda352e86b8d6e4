//! Tests of `tls`: the hints of failed handshakes.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A plain-HTTP service on loopback: it answers whatever comes (a ClientHello) with a 400, as
/// HTTP servers do; its address.
async fn plain_http() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n").await;
        }
    });
    addr
}

#[tokio::test]
async fn a_plain_http_local_service_is_named_as_such() {
    let addr = plain_http().await;
    let configs = LocalConfigs::new(None, true).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let e = connect_local(configs.offering(Alpn::Either), "127.0.0.1", tcp).await.unwrap_err();
    assert!(e.starts_with("TLS handshake with 127.0.0.1 failed: "), "{e}");
    assert!(e.contains("is the local service plain HTTP? Then use http://"), "{e}");
}

#[tokio::test]
async fn a_plain_http_server_endpoint_is_named_as_such() {
    let addr = plain_http().await;
    // No roots needed: the handshake fails before any certificate.
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let e = connect(config, "localhost", tcp).await.unwrap_err();
    assert!(e.contains("Then use ws:// in server"), "{e}");
}

#[tokio::test]
async fn a_closed_connection_gets_no_hint() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { drop(listener.accept().await) });
    let configs = LocalConfigs::new(None, true).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let e = connect_local(configs.offering(Alpn::Either), "127.0.0.1", tcp).await.unwrap_err();
    assert!(!e.contains("plain HTTP") && !e.contains("certificate"), "{e}");
}
