//! Identity: the installation's fleet CA, the server certificate, gateway certificates (one
//! per gateway, naming its serial), and the TLS 1.3 configurations that use them.
//!
//! A gateway certificate's subject common name is its 12-digit serial; the server reads the
//! serial from the verified client certificate, never from what the gateway says.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sunfleet_engine::ids::Serial;

/// ALPN protocol name of this protocol version.
pub const ALPN: &[u8] = b"sunfleet/1";
/// Organisational unit written into gateway certificates.
const GATEWAY_UNIT: &str = "Sunfleet gateway";

/// Files in a TLS folder (`<data>/tls` by default).
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server.key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation: {context}: {source}")]
    Generate {
        context: String,
        source: rcgen::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("TLS verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("client certificate: {0}")]
    BadGatewayCertificate(String),
}

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertifiedKey {
    /// Writes `<stem>.pem` and `<stem>.key` (the key readable by its owner only).
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(), TlsError> {
        create_dir(dir)?;
        write_file(&dir.join(format!("{stem}.pem")), &self.cert_pem, false)?;
        write_file(&dir.join(format!("{stem}.key")), &self.key_pem, true)
    }

    /// Reads `<stem>.pem` and `<stem>.key`, checking that both parse.
    pub fn load(dir: &Path, stem: &str) -> Result<Self, TlsError> {
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        let loaded = Self {
            cert_pem: read_file(&cert_path)?,
            key_pem: read_file(&key_path)?,
        };
        loaded.chain().map_err(|_| TlsError::Pem {
            path: cert_path,
            what: "certificate",
        })?;
        loaded.private_key().map_err(|_| TlsError::Pem {
            path: key_path,
            what: "private key",
        })?;
        Ok(loaded)
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let chain: Vec<_> = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| pem_error("certificate"))?;
        if chain.is_empty() {
            return Err(pem_error("certificate"));
        }
        Ok(chain)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|_| pem_error("key"))
    }
}

fn pem_error(what: &'static str) -> TlsError {
    TlsError::Pem {
        path: PathBuf::from("(in memory)"),
        what,
    }
}

/// The installation's fleet CA: signs the server's and every gateway's certificate.
pub struct FleetCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn generate_error(context: &str) -> impl FnOnce(rcgen::Error) -> TlsError + '_ {
    move |source| TlsError::Generate {
        context: context.to_owned(),
        source,
    }
}

/// Validity from the start of this year for `years`.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let year = 1970
        + (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            / 31_556_952) as i32;
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + years, 1, 1);
}

impl FleetCa {
    /// A new CA with a fresh P-256 key.
    pub fn generate(name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(generate_error("CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(generate_error("CA parameters"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Sunfleet");
        params.distinguished_name = dn;
        set_validity(&mut params, 30);
        let cert = params
            .self_signed(&key)
            .map_err(generate_error("CA certificate"))?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_file(&cert_path)?;
        let key_pem = read_file(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| TlsError::Pem {
            path: key_path,
            what: "private key",
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|_| TlsError::Pem {
            path: cert_path,
            what: "CA certificate",
        })?;
        Ok(Self {
            cert_pem,
            key_pem,
            issuer,
        })
    }

    /// Writes `ca.pem` and `ca.key` into `dir`, refusing to replace an existing CA (every
    /// gateway certificate hangs on it).
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        create_dir(dir)?;
        let cert_path = dir.join(CA_CERT_FILE);
        if cert_path.exists() {
            return Err(TlsError::Io {
                path: cert_path,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a fleet CA is already there; it is never replaced silently",
                ),
            });
        }
        write_file(&dir.join(CA_KEY_FILE), &self.key_pem, true)?;
        write_file(&cert_path, &self.cert_pem, false)
    }

    /// The CA in `dir`, created there if the folder has none. Returns whether it was created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), TlsError> {
        if dir.join(CA_CERT_FILE).exists() {
            return Ok((Self::load(dir)?, false));
        }
        let ca = Self::generate("Sunfleet fleet CA")?;
        ca.save(dir)?;
        Ok((ca, true))
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for the given DNS names and IP addresses.
    pub fn issue_server(&self, names: &[String]) -> Result<CertifiedKey, TlsError> {
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(generate_error("server names"))?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map_or("sunfleet", String::as_str),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, 5);
        self.issue(params, "server certificate")
    }

    /// A gateway's client certificate: its serial is the subject's common name.
    pub fn issue_gateway(&self, serial: Serial) -> Result<CertifiedKey, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(generate_error("gateway parameters"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, serial.to_string());
        dn.push(DnType::OrganizationalUnitName, GATEWAY_UNIT);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, 25);
        self.issue(params, "gateway certificate")
    }

    fn issue(&self, params: CertificateParams, what: &str) -> Result<CertifiedKey, TlsError> {
        let key = KeyPair::generate().map_err(generate_error(what))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error(what))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What a server needs: the CA that gateway certificates must chain to, and its own
/// certificate.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub ca_pem: String,
    pub server: CertifiedKey,
}

impl ServerIdentity {
    /// The CA and server certificate in `dir`; on first use the CA and a server certificate
    /// for `names` are created there. Returns whether anything was created.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<(Self, bool), TlsError> {
        let (ca, created_ca) = FleetCa::load_or_create(dir)?;
        let server_stem = SERVER_CERT_FILE.trim_end_matches(".pem");
        let (server, created_server) = if dir.join(SERVER_CERT_FILE).exists() {
            (CertifiedKey::load(dir, server_stem)?, false)
        } else {
            let server = ca.issue_server(names)?;
            server.save(dir, server_stem)?;
            (server, true)
        };
        Ok((
            Self {
                ca_pem: ca.cert_pem,
                server,
            },
            created_ca || created_server,
        ))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|_| pem_error("CA certificate"))?)
            .map_err(TlsError::Config)?;
    }
    if roots.is_empty() {
        return Err(pem_error("CA certificate"));
    }
    Ok(Arc::new(roots))
}

/// TLS 1.3 only, a client certificate from the fleet CA required, no 0-RTT (early data is
/// replayable, and a batch must be acknowledged exactly once).
pub fn server_config(identity: &ServerIdentity) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(&identity.ca_pem)?,
        provider(),
    )
    .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.server.chain()?, identity.server.private_key()?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.max_early_data_size = 0;
    Ok(config)
}

/// The server certificate for the SQL endpoints (Postgres wire, Flight SQL): no client
/// certificate (clients sign in with a password), TLS 1.2 or 1.3 as database drivers offer.
pub fn sql_server_config(identity: &ServerIdentity) -> Result<rustls::ServerConfig, TlsError> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.server.chain()?, identity.server.private_key()?)?)
}

/// A gateway's TLS 1.3 configuration: trusts only the fleet CA, presents its certificate.
pub fn gateway_config(
    ca_pem: &str,
    gateway: &CertifiedKey,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(gateway.chain()?, gateway.private_key()?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.enable_early_data = false;
    Ok(config)
}

/// The serial a verified gateway certificate names.
pub fn gateway_serial(cert: &CertificateDer<'_>) -> Result<Serial, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::BadGatewayCertificate(format!("does not parse: {e}")))?;
    let common_name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| TlsError::BadGatewayCertificate("has no subject common name".into()))?;
    common_name.parse::<Serial>().map_err(|_| {
        TlsError::BadGatewayCertificate(format!(
            "common name {common_name:?} is not a gateway serial"
        ))
    })
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn read_file(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}
