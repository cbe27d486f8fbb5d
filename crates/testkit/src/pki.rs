//! Certificates made for one test: a CA of its own, a server certificate for `localhost` and
//! 127.0.0.1 (and any other names), client certificates, and certificates that must be
//! refused (expired, or issued by another CA). Each is written as PEM files into the test's
//! scratch directory, for sipshard's flags and for Kamailio or baresip, and is also at hand as
//! rustls configurations for the test's own TLS user agents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Issued {
    /// `--tls-cert FILE --tls-key FILE`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }
}

/// One test's CA.
pub struct Pki {
    dir: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
    /// The CA certificate, PEM (`--tls-ca`).
    pub ca_file: PathBuf,
}

impl Pki {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
            ca_file,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), valid from yesterday for a year.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let now = time_now();
        self.issue_valid(file, names, now - DAY, now + 365 * DAY)
    }

    /// A certificate for `names` that expired yesterday.
    pub fn issue_expired(&self, file: &str, names: &[&str]) -> Issued {
        let now = time_now();
        self.issue_valid(file, names, now - 30 * DAY, now - DAY)
    }

    fn issue_valid(&self, file: &str, names: &[&str], from: i64, to: i64) -> Issued {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + secs(from);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + secs(to);
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        let (cert_file, key_file) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        Issued {
            cert: cert_file,
            key: key_file,
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("CA into roots");
        roots
    }

    /// A client that trusts this CA, showing `cert` when given.
    pub fn client(&self, cert: Option<&Issued>) -> Arc<ClientConfig> {
        let b = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.roots());
        Arc::new(match cert {
            Some(c) => b
                .with_client_auth_cert(c.chain(), c.private_key())
                .expect("client cert"),
            None => b.with_no_client_auth(),
        })
    }

    /// A server showing `cert` (a UAS or next hop played by the test).
    pub fn server(&self, cert: &Issued) -> Arc<ServerConfig> {
        Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(cert.chain(), cert.private_key())
                .expect("server cert"),
        )
    }
}

#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const DAY: i64 = 86_400;

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn secs(s: i64) -> std::time::Duration {
    std::time::Duration::from_secs(s.max(0) as u64)
}
