//! `--tls-trust`: the certificate names whose verified holders are trusted peers (a trunk or
//! a peer proxy that authenticates with its certificate instead of Digest credentials).
//!
//! A name matches the way a server name does (RFC 6125, through webpki): a DNS name in the
//! certificate's subjectAltName, wildcards included, or an IP address entry. Only a
//! certificate that the handshake verified against `--tls-ca` is ever looked at.

use rustls_pki_types::{CertificateDer, ServerName};

/// The trusted names.
#[derive(Debug, Default)]
pub struct Trust {
    names: Vec<ServerName<'static>>,
}

impl Trust {
    pub fn new(names: &[String]) -> Result<Trust, String> {
        let names = names
            .iter()
            .map(|n| {
                ServerName::try_from(n.clone())
                    .map_err(|_| format!("--tls-trust: {n:?} is not a DNS name or IP address"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Trust { names })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether the verified end-entity certificate `cert` carries one of the trusted names.
    pub fn trusts(&self, cert: &CertificateDer<'_>) -> bool {
        let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
            return false;
        };
        self.names
            .iter()
            .any(|n| ee.verify_is_valid_for_subject_name(n).is_ok())
    }
}
