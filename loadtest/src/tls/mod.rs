//! `--transport tls`: the one rustls client configuration every connection of a run shares,
//! built from the flags before anything connects (so a missing file is a usage error, not a
//! failed run). Sharing it shares its session cache: a connection opened after another one
//! finished its handshake resumes that session with a TLS 1.3 ticket, unless `--tls-no-resume`.
//!
//! Here: the flags ([`Tls::new`]); `insecure.rs`, the verifier of `--tls-insecure`;
//! `sessions.rs`, the session cache. The connections themselves are driven in `engine::tls` (persistent SIP connections) and
//! `engine::handshakes` (`--tls-handshakes-only`).

use std::sync::Arc;

mod insecure;
mod sessions;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use sipshard::transport::tls::load::{ca_file, certs, key};

use crate::cli::TlsArgs;
use insecure::AnyCertificate;
use sessions::Sessions;

/// What a run over TLS needs.
#[derive(Clone, Debug)]
pub struct Tls {
    pub client: Arc<ClientConfig>,
    /// The name the target's certificate must carry (sent as SNI when it is a DNS name).
    pub server_name: ServerName<'static>,
    /// The same, as given (for messages).
    pub name: String,
    /// Whether handshakes may resume an earlier session.
    pub resume: bool,
    /// `--tls-handshakes-only`: measure handshakes, send no SIP scenario.
    pub handshakes_only: bool,
    /// `ca` or `insecure`, for the report.
    pub verify: &'static str,
}

/// The cryptography, as in the proxy: ring (rustls marks it deprecated only because it has no
/// post-quantum key exchange yet), offering X25519 first. rustls's ring provider lists P-384
/// first, and the client's first group is the key share it sends, which a server takes
/// rather than ask for another: every handshake would then pay for P-384 on both sides, many
/// times X25519's cost, where phones and browsers (OpenSSL, BoringSSL) offer X25519.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::{default_provider, kx_group};
    Arc::new(CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    })
}

impl Tls {
    /// Build from the flags; `target_ip` is the default server name.
    pub fn new(a: &TlsArgs, target_ip: std::net::IpAddr) -> Result<Tls, String> {
        let name = a
            .tls_server_name
            .clone()
            .unwrap_or_else(|| target_ip.to_string());
        let server_name = ServerName::try_from(name.as_str())
            .map(|n| n.to_owned())
            .map_err(|_| format!("--tls-server-name {name:?}: not a DNS name or an IP address"))?;
        let provider = provider();
        let versions = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let (builder, verify) = match (&a.tls_ca, a.tls_insecure) {
            (Some(ca), _) => {
                let roots = ca_file(ca).map_err(|e| format!("--tls-ca {e}"))?;
                (versions.with_root_certificates(roots), "ca")
            }
            (None, true) => (
                versions
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
                "insecure",
            ),
            (None, false) => {
                return Err(
                    "--transport tls needs --tls-ca FILE (verify the target) or \
                            --tls-insecure (do not, for tests and benchmarks)"
                        .into(),
                )
            }
        };
        let mut client = match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(k)) => builder
                .with_client_auth_cert(certs(cert)?, key(k)?)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?,
            _ => builder.with_no_client_auth(),
        };
        client.resumption = if a.tls_no_resume {
            Resumption::disabled()
        } else {
            Resumption::store(Arc::new(Sessions::default()))
        };
        Ok(Tls {
            client: Arc::new(client),
            server_name,
            name,
            resume: !a.tls_no_resume,
            handshakes_only: a.tls_handshakes_only,
            verify,
        })
    }
}
