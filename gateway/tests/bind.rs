//! The gateway listens on loopback only.

mod support;

use gateway::{Gateway, GatewayConfig, GatewayError};
use node_kit::protocol::method;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[tokio::test]
async fn non_loopback_addresses_are_refused_at_startup() {
    let home = tempfile::tempdir().unwrap();
    for addr in ["0.0.0.0:0", "[::]:0", "192.168.1.20:18789", "10.0.0.1:0"] {
        let mut config = GatewayConfig::new(home.path().to_path_buf());
        config.bind = vec!["127.0.0.1:0".parse().unwrap(), addr.parse().unwrap()];
        let err = Gateway::bind(config).await.err().expect("refused");
        assert!(matches!(err, GatewayError::NonLoopbackBind(_)), "{addr}: {err}");
        let message = err.to_string();
        assert!(message.contains("loopback") || message.contains("127.0.0.1"), "{message}");
    }
}

#[tokio::test]
async fn loopback_v4_and_v6_are_accepted() {
    let home = tempfile::tempdir().unwrap();
    let mut config = GatewayConfig::new(home.path().to_path_buf());
    config.bind = vec!["127.0.0.1:0".parse().unwrap()];
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if v6 {
        config.bind.push("[::1]:0".parse().unwrap());
    } else {
        support::skip("this host has no IPv6 loopback: only 127.0.0.1 was tried");
    }
    let gateway = Gateway::bind(config).await.unwrap();
    assert_eq!(gateway.local_addrs().len(), if v6 { 2 } else { 1 });
    assert!(gateway.local_addrs().iter().all(|a| a.ip().is_loopback()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let token = gateway::home::token_path(home.path());
        assert_eq!(std::fs::metadata(token).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

/// With no address given, the gateway listens on both loopbacks, 127.0.0.1 and ::1, and nowhere else;
/// a client reaches it over ::1.
#[tokio::test]
async fn by_default_it_listens_on_both_loopbacks_and_nowhere_else() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        return support::skip("this host has no IPv6 loopback");
    }
    let home = tempfile::tempdir().unwrap();
    let mut config = GatewayConfig::new(home.path().to_path_buf());
    // The default pair of addresses (`bind` left empty), on a port of the system's choosing.
    config.port = 0;
    let gateway = Gateway::bind(config).await.unwrap();
    let addrs = gateway.local_addrs();
    let ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    assert_eq!(ips, [IpAddr::from(Ipv4Addr::LOCALHOST), IpAddr::from(Ipv6Addr::LOCALHOST)]);
    let token = gateway::home::GatewayToken::load(&gateway::home::token_path(home.path())).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run(async {
        let _ = stopped.await;
    }));
    let over_v6 = node_kit::Client::builder(format!("ws://{}", addrs[1])).token(token.expose()).connect().await;
    over_v6.expect("reachable over ::1").request(method::HEALTH, serde_json::Value::Null).await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();
}
