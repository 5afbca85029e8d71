//! The gateway listens on loopback only.

use gateway::{Gateway, GatewayConfig, GatewayError};

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
    let gateway = Gateway::bind(config).await.unwrap();
    assert!(gateway.local_addrs()[0].ip().is_loopback());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let token = gateway::home::token_path(home.path());
        assert_eq!(std::fs::metadata(token).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
