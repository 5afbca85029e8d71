//! The one certificate verifier, used by both sides of every Lanyard TLS connection.
//!
//! There is no CA: a certificate is acceptable when the key in it is the pinned one. That alone would let
//! anyone replay a certificate they have seen, so the handshake signature is always verified too, by
//! rustls' own code, proving the peer holds the private key.

use crate::key_id::KeyId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// Which peer keys a verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Only this key.
    Key(KeyId),
    /// Any key that proves possession. For first contact: the caller reads the peer's key ID after the
    /// handshake ([`peer_key_id`]) and decides (pairing, or a lookup in the paired-node store).
    AnyKey,
}

#[derive(Debug)]
pub struct PeerKeyVerifier {
    pin: Pin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerKeyVerifier {
    pub fn new(pin: Pin) -> PeerKeyVerifier {
        PeerKeyVerifier { pin, algorithms: crate::crypto_provider().signature_verification_algorithms }
    }

    fn check(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<(), Error> {
        if !intermediates.is_empty() {
            return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
        }
        let id = peer_key_id(end_entity)?;
        match self.pin {
            Pin::Key(pinned) if pinned != id => {
                Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
            }
            _ => Ok(()),
        }
    }
}

/// The key ID of the peer of an established TLS connection (client or server side); `None` before the
/// handshake or without a usable certificate.
pub fn peer_key(connection: &rustls::CommonState) -> Option<KeyId> {
    peer_key_id(connection.peer_certificates()?.first()?).ok()
}

/// The key ID of the key in a peer's certificate.
pub fn peer_key_id(certificate: &CertificateDer<'_>) -> Result<KeyId, Error> {
    let parsed = ParsedCertificate::try_from(certificate)?;
    Ok(KeyId::of_spki(parsed.subject_public_key_info().as_ref()))
}

/// The handshake signature half of both verifier traits, identical on both sides: rustls' own check
/// against the key in the presented certificate, Ed25519 only.
macro_rules! handshake_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
    };
}

impl ServerCertVerifier for PeerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity, intermediates).map(|()| ServerCertVerified::assertion())
    }

    handshake_signature_checks!();
}

impl ClientCertVerifier for PeerKeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity, intermediates).map(|()| ClientCertVerified::assertion())
    }

    handshake_signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use rustls::sign::CertifiedKey;
    use rustls::{ClientConfig, ServerConfig};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// Runs one handshake over an in-memory pipe and returns what each side saw: the peer key ID or the error.
    async fn handshake(server: ServerConfig, client: ClientConfig) -> (Result<KeyId, Error>, Result<KeyId, Error>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let connector = TlsConnector::from(Arc::new(client));
        let server_side = async move {
            let mut tls = acceptor.accept(a).await.map_err(tls_error)?;
            let id = peer_key_id(&tls.get_ref().1.peer_certificates().unwrap()[0]).unwrap();
            tls.write_all(b"ok").await.map_err(tls_error)?;
            tls.flush().await.map_err(tls_error)?;
            Ok(id)
        };
        let client_side = async move {
            let name = ServerName::try_from("lanyard").unwrap();
            let mut tls = connector.connect(name, b).await.map_err(tls_error)?;
            let id = peer_key_id(&tls.get_ref().1.peer_certificates().unwrap()[0]).unwrap();
            let mut buf = [0u8; 2];
            // TLS 1.3 client auth failures surface on the first read.
            tls.read_exact(&mut buf).await.map_err(tls_error)?;
            Ok(id)
        };
        tokio::join!(server_side, client_side)
    }

    /// The TLS error behind a failed handshake or read, so a test can tell which check refused; an I/O
    /// failure with no TLS error in it becomes `General`, which no test expects.
    fn tls_error(e: std::io::Error) -> Error {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()).cloned().unwrap_or(Error::General(e.to_string()))
    }

    fn server(identity: &Identity, pin: Pin) -> ServerConfig {
        identity.server_config(PeerKeyVerifier::new(pin)).unwrap()
    }

    fn client(identity: &Identity, pin: Pin) -> ClientConfig {
        identity.client_config(PeerKeyVerifier::new(pin)).unwrap()
    }

    /// A certificate shown with a private key that is not the certificate's own.
    fn stolen(certificate: &Identity, holder: &Identity) -> Arc<CertifiedKey> {
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
            rcgen::KeyPair::from_pem(&holder.to_pkcs8_pem()).unwrap().serialize_der(),
        ));
        let signer = crate::crypto_provider().key_provider.load_private_key(key).unwrap();
        Arc::new(CertifiedKey::new(vec![certificate.certificate().clone()], signer))
    }

    #[derive(Debug)]
    struct Presents(Arc<CertifiedKey>);

    impl rustls::server::ResolvesServerCert for Presents {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    impl rustls::client::ResolvesClientCert for Presents {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn pinned_keys_meet() {
        let (bridge, node) = (Identity::generate(), Identity::generate());
        let (seen_by_bridge, seen_by_node) =
            handshake(server(&bridge, Pin::AnyKey), client(&node, Pin::Key(bridge.id()))).await;
        assert_eq!(seen_by_bridge.unwrap(), node.id());
        assert_eq!(seen_by_node.unwrap(), bridge.id());
    }

    #[tokio::test]
    async fn another_key_is_refused_by_the_client() {
        let (bridge, impostor, node) = (Identity::generate(), Identity::generate(), Identity::generate());
        let (_, seen_by_node) = handshake(server(&impostor, Pin::AnyKey), client(&node, Pin::Key(bridge.id()))).await;
        assert_eq!(seen_by_node, Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)));
    }

    #[tokio::test]
    async fn a_replayed_server_certificate_without_its_key_is_refused() {
        let (bridge, impostor, node) = (Identity::generate(), Identity::generate(), Identity::generate());
        let config = ServerConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(Arc::new(PeerKeyVerifier::new(Pin::AnyKey)))
            .with_cert_resolver(Arc::new(Presents(stolen(&bridge, &impostor))));
        let (_, seen_by_node) = handshake(config, client(&node, Pin::Key(bridge.id()))).await;
        assert_eq!(seen_by_node, Err(Error::InvalidCertificate(CertificateError::BadSignature)));
    }

    #[tokio::test]
    async fn a_replayed_client_certificate_without_its_key_is_refused() {
        let (bridge, node, impostor) = (Identity::generate(), Identity::generate(), Identity::generate());
        let config = ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerKeyVerifier::new(Pin::Key(bridge.id()))))
            .with_client_cert_resolver(Arc::new(Presents(stolen(&node, &impostor))));
        let (seen_by_bridge, _) = handshake(server(&bridge, Pin::AnyKey), config).await;
        assert_eq!(seen_by_bridge, Err(Error::InvalidCertificate(CertificateError::BadSignature)));
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_is_refused() {
        let bridge = Identity::generate();
        let config = ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerKeyVerifier::new(Pin::Key(bridge.id()))))
            .with_no_client_auth();
        let (seen_by_bridge, _) = handshake(server(&bridge, Pin::AnyKey), config).await;
        assert_eq!(seen_by_bridge, Err(Error::NoCertificatesPresented));
    }

    #[tokio::test]
    async fn a_pinned_server_refuses_other_clients() {
        let (bridge, node, other) = (Identity::generate(), Identity::generate(), Identity::generate());
        let (seen_by_bridge, _) =
            handshake(server(&bridge, Pin::Key(node.id())), client(&other, Pin::Key(bridge.id()))).await;
        assert_eq!(seen_by_bridge, Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)));
    }
}
