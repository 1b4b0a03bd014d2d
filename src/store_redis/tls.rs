//! Redis over TLS: the CA, client certificate and key that a `rediss://`
//! connection uses, read from the files `redis_tls_ca_file`,
//! `redis_tls_cert_file` and `redis_tls_key_file` name and checked once, at
//! start-up, so that a bad file stops the process naming its field instead of
//! failing the first reconnect.

use std::io::Read;

use ::redis::{ClientTlsConfig, TlsCertificates};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use zeroize::Zeroizing;

use crate::{AuthConfig, ConfigError};

/// Largest certificate or key file read, in bytes: a PEM bundle of a few
/// hundred CA certificates fits; a path to a device or a log does not hang
/// start-up.
const MAX_FILE: u64 = 1 << 20;

/// The TLS material of a `rediss://` connection: the CA certificates Redis's
/// certificate must chain to (none: the system's roots), and for mutual TLS
/// the certificate and key this instance presents. Made by
/// [`RedisTls::from_config`]; [`Default`] is "system roots, no client
/// certificate". `Debug` shows what is set, never a key.
///
/// Pass it to [`RedisStores::connect_tls`](super::RedisStores::connect_tls).
/// The server's name is checked against the host of the URL: connect by the
/// name (or IP address) its certificate carries.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// PEM of the CA certificates.
    ca: Option<Vec<u8>>,
    /// PEM of the client certificate chain and of its key.
    client: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field(
                "ca",
                &if self.ca.is_some() {
                    "file"
                } else {
                    "system roots"
                },
            )
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl RedisTls {
    /// Reads and checks the TLS files of `config`: the settings fit together
    /// (as [`AuthConfig::validate`] checks), every file set is readable and
    /// parses (the CA file holds at least one X.509 certificate, the
    /// certificate file a chain, the key file a private key of a kind rustls
    /// signs with), and the key belongs to the certificate.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field at fault
    /// (`redis_tls_ca_file`, `redis_tls_cert_file`, `redis_tls_key_file`, or
    /// `redis_url` when it is not `rediss://`). A reason never quotes a key.
    pub fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        config.check_redis_tls()?;
        let mut tls = Self::default();
        if !config.redis_tls_ca_file.is_empty() {
            let field = "redis_tls_ca_file";
            let ca = read(field, &config.redis_tls_ca_file)?;
            let mut roots = RootCertStore::empty();
            for (i, cert) in certificates(field, &ca)?.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    ConfigError::invalid(
                        field,
                        format!("certificate {} is not a usable CA certificate: {e}", i + 1),
                    )
                })?;
            }
            tls.ca = Some(ca);
        }
        if !config.redis_tls_cert_file.is_empty() {
            let cert = read("redis_tls_cert_file", &config.redis_tls_cert_file)?;
            let key = Zeroizing::new(read("redis_tls_key_file", &config.redis_tls_key_file)?);
            let chain = certificates("redis_tls_cert_file", &cert)?;
            let private = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                // pem's errors may quote a line of the file: not this one's.
                let what = match e {
                    pem::Error::NoItemsFound => "holds no PEM private key",
                    _ => "is not a valid PEM private key",
                };
                ConfigError::invalid(
                    "redis_tls_key_file",
                    format!(
                        "{what} (expected PKCS#8 \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
                    ),
                )
            })?;
            CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
                ConfigError::invalid(
                    "redis_tls_key_file",
                    format!("does not fit redis_tls_cert_file: {e}"),
                )
            })?;
            tls.client = Some((cert, key));
        }
        Ok(tls)
    }

    /// Whether nothing is set (system roots, no client certificate).
    pub fn is_default(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }

    /// Whether a client certificate is presented (mutual TLS).
    pub fn has_client_certificate(&self) -> bool {
        self.client.is_some()
    }

    /// What redis-rs builds its client from.
    pub(super) fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.to_vec(),
            }),
            root_cert: self.ca.clone(),
        }
    }
}

/// The rustls provider: aws-lc-rs, which the crate builds anyway.
fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Makes aws-lc-rs the process's rustls provider unless one is installed
/// already (a host app may have chosen one); redis-rs builds its TLS
/// configuration from the process default.
pub(super) fn install_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is as good.
        let _ = provider().install_default();
    }
}

/// The file `path` of `field`, at most [`MAX_FILE`] bytes.
fn read(field: &'static str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let cannot =
        |e: std::io::Error| ConfigError::invalid(field, format!("cannot read {path:?}: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(ConfigError::invalid(
            field,
            format!("{path:?} is larger than {MAX_FILE} bytes: not a PEM certificate file"),
        ));
    }
    Ok(bytes)
}

/// The `CERTIFICATE` blocks of `pem`, at least one.
fn certificates(
    field: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::invalid(field, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            field,
            "holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &AuthConfig) -> &'static str {
        match RedisTls::from_config(config) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn nothing_set_is_the_default() {
        let tls = RedisTls::from_config(&AuthConfig::default()).unwrap();
        assert!(tls.is_default() && !tls.has_client_certificate());
        let certs = tls.certificates();
        assert!(certs.root_cert.is_none() && certs.client_tls.is_none());
    }

    #[test]
    fn unreadable_and_unparsable_files_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let bad_der = dir.path().join("bad-der.pem");
        std::fs::write(
            &bad_der,
            "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.pem");
        let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let config = |ca: String| AuthConfig {
            redis_url: "rediss://127.0.0.1:6380".into(),
            redis_tls_ca_file: ca,
            ..AuthConfig::default()
        };
        for ca in [s(&missing), s(dir.path()), s(&garbage), s(&bad_der)] {
            assert_eq!(field_of(&config(ca.clone())), "redis_tls_ca_file", "{ca}");
        }
        // Shape errors come first, before any file is read.
        let plain = AuthConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            ..config(s(&missing))
        };
        assert_eq!(field_of(&plain), "redis_url");
    }
}
