//! rustls configurations of the flooder, from the PEM files `scripts/bench-tls-certs.sh` makes:
//! its connections verify the proxy against the bench CA, and the sink shows its own
//! certificate. Session resumption stays on (rustls's defaults), as a phone would have it.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use sipshard::transport::tls::load::{self, ca_file, certs};

/// ring, as sipshard's own provider, with X25519 first (ring's default offers P-384 first).
#[allow(deprecated)] // ring: no post-quantum key exchange.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::{default_provider, kx_group};
    let mut p = default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(p)
}

/// A client that trusts the CA in `ca`.
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let roots = ca_file(ca)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server showing `cert` (chain) with `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let key = load::key(key)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs(cert)?, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(Arc::new(config))
}
