//! Certificates and keys from PEM files into rustls configurations, once at start-up and again
//! on SIGHUP. Only here are TLS files read; the shards receive finished `Arc`s.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{ClientAuth, TlsSettings};

/// TLS sessions each server config remembers for resumption by session id (TLS 1.2); TLS 1.3
/// resumes with tickets, which need no memory here.
const SESSION_CACHE: usize = 16 * 1024;

/// The cryptography: ring, well kept and free of C libraries. rustls marks it deprecated only
/// because it has no post-quantum key exchange yet; a later rustls can switch to aws-lc-rs here.
/// Key exchange prefers X25519: ring's default order puts P-384 first, which makes every
/// handshake with a rustls peer (our own connections to next hops among them) several times
/// dearer on both ends. Cipher suites prefer AES-128-GCM with SHA-256: ring's default puts
/// AES-256-GCM with SHA-384 first, whose key schedule runs SHA-512 in software (no CPU has it
/// in hardware, while SHA-256 has SHA-NI), a twelfth of a full handshake's CPU here.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::{cipher_suite as cs, default_provider, kx_group};
    let mut p = default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    Arc::new(p)
}

/// A certificate chain (leaf first) from a PEM file. Public, with [`key`] and [`ca_file`], for
/// the workspace's TLS clients (sipshard-load, udp-flood): one way to read PEM files.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(chain)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The trust anchors of a CA file (PEM).
pub fn ca_file(path: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in certs(path)? {
        store
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(store)
}

/// The trust anchors: `--tls-ca`, else the system's roots.
fn roots(ca: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => store = ca_file(path)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                log::warn!("tls: no system root certificate found; give --tls-ca");
            }
        }
    }
    Ok(Arc::new(store))
}

/// The server side, when `--tls-cert` is given: our chain and key, client certificates as
/// `--tls-verify-client` asks, session ids and tickets for resumption.
pub fn server_config(s: &TlsSettings) -> Result<Option<Arc<ServerConfig>>, String> {
    let (Some(cert), Some(key_path)) = (&s.cert, &s.key) else {
        return Ok(None);
    };
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = match s.verify_client {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let roots = roots(s.ca.as_deref())?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match mode {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("tls: {e}"))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("tls: {e}"))?;
    // Our order of cipher suites, not the client's (most clients put AES-256 first).
    config.ignore_client_order = true;
    // One ticket per TLS 1.3 handshake (rustls sends two): a phone resumes one connection at
    // a time, and each ticket costs a key derivation and an encryption.
    config.send_tls13_tickets = 1;
    Ok(Some(Arc::new(config)))
}

/// The client side, for connections we open: servers verified against `--tls-ca` (or the
/// system roots); our own certificate offered when we have one (mutual TLS to trunks).
pub fn client_config(s: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(roots(s.ca.as_deref())?, Arc::clone(&provider))
            .build()
            .map_err(|e| format!("tls: {e}"))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_webpki_verifier(verifier);
    let config = match (&s.cert, &s.key) {
        (Some(cert), Some(key_path)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_path)?)
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
