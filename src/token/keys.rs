//! The RSA signing key: loading, `kid`, JWK, and RS256 signing through
//! aws-lc-rs (never through the `rsa` crate; see the README's security notes).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ConfigError;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A public key as served in the JWK Set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Jwk {
    /// Always `RSA`.
    pub kty: String,
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// Always `RS256`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Modulus, unpadded base64url of its minimal big-endian octets.
    pub n: String,
    /// Public exponent, same encoding.
    pub e: String,
}

impl Jwk {
    /// The JWK of an RSA public key given as big-endian modulus and exponent.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Self {
        let n = B64.encode(strip_leading_zeros(n));
        let e = B64.encode(strip_leading_zeros(e));
        // RFC 7638: members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = B64.encode(Sha256::digest(canonical.as_bytes()));
        Self {
            kty: "RSA".into(),
            kid,
            alg: "RS256".into(),
            use_: "sig".into(),
            n,
            e,
        }
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// The RSA private key that signs access tokens. `Debug` is redacted; the
/// PKCS#8 bytes are zeroized on drop.
pub struct SigningKey {
    pair: RsaKeyPair,
    pkcs8_der: Zeroizing<Vec<u8>>,
    jwk: Jwk,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PEM RSA private key (PKCS#8 `PRIVATE KEY`, or PKCS#1
    /// `RSA PRIVATE KEY`) of at least 2048 bits.
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] when the PEM does not parse or the key is weak.
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|e| {
                ConfigError::SigningKey(format!("not a PKCS#8 or PKCS#1 PEM RSA private key: {e}"))
            })?;
        Self::from_rsa(&key)
    }

    /// Loads a PKCS#8 DER RSA private key.
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] when the DER does not parse or the key is weak.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, ConfigError> {
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| ConfigError::SigningKey(format!("not a PKCS#8 RSA private key: {e}")))?;
        Self::from_rsa(&key)
    }

    /// Generates a fresh key of `bits` bits (2048 at least).
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] when `bits` is too small or generation fails.
    pub fn generate(bits: usize) -> Result<Self, ConfigError> {
        if bits < MIN_RSA_BITS {
            return Err(ConfigError::SigningKey(format!(
                "RSA keys need at least {MIN_RSA_BITS} bits"
            )));
        }
        let mut rng = rsa::rand_core::OsRng;
        let key = RsaPrivateKey::new(&mut rng, bits)
            .map_err(|e| ConfigError::SigningKey(e.to_string()))?;
        Self::from_rsa(&key)
    }

    fn from_rsa(key: &RsaPrivateKey) -> Result<Self, ConfigError> {
        let bits = key.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(ConfigError::SigningKey(format!(
                "RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
            )));
        }
        key.validate()
            .map_err(|e| ConfigError::SigningKey(format!("inconsistent RSA key: {e}")))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| ConfigError::SigningKey(e.to_string()))?;
        let pkcs8_der = Zeroizing::new(der.as_bytes().to_vec());
        let pair = RsaKeyPair::from_pkcs8(&pkcs8_der)
            .map_err(|e| ConfigError::SigningKey(format!("aws-lc refused the key: {e}")))?;
        let n = key.n().to_bytes_be();
        let e = key.e().to_bytes_be();
        let jwk = Jwk::from_rsa_components(&n, &e);
        Ok(Self {
            pair,
            pkcs8_der,
            jwk,
            n,
            e,
        })
    }

    /// The key as PKCS#8 PEM, for persisting it.
    ///
    /// # Errors
    /// Only if PEM encoding fails.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, ConfigError> {
        let key = RsaPrivateKey::from_pkcs8_der(&self.pkcs8_der)
            .map_err(|e| ConfigError::SigningKey(e.to_string()))?;
        key.to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| ConfigError::SigningKey(e.to_string()))
    }

    /// The RFC 7638 thumbprint used as `kid`.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The public half as a JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Big-endian modulus and exponent.
    pub fn public_components(&self) -> (&[u8], &[u8]) {
        (&self.n, &self.e)
    }

    /// A secret derived from the private key, used as the HS256 key of
    /// refresh tokens, so they survive restarts with the signing key and die
    /// with its rotation.
    pub(crate) fn derive_secret(&self, label: &[u8]) -> Zeroizing<Vec<u8>> {
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, label),
            &self.pkcs8_der,
        );
        Zeroizing::new(tag.as_ref().to_vec())
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `msg` (constant time, aws-lc).
    pub(crate) fn sign_rs256(&self, msg: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)?;
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_rfc7638_thumbprint() {
        // RFC 7638 section 3.1 example key.
        let n = B64.decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw").unwrap();
        let e = B64.decode("AQAB").unwrap();
        let jwk = Jwk::from_rsa_components(&n, &e);
        assert_eq!(jwk.kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        // Leading zero octets are stripped from n.
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        assert_eq!(Jwk::from_rsa_components(&padded, &e), jwk);
    }

    #[test]
    fn weak_and_garbage_keys_are_refused() {
        assert!(SigningKey::from_pem("not a key").is_err());
        assert!(SigningKey::generate(1024).is_err());
        let mut rng = rsa::rand_core::OsRng;
        let small = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let pem = small.to_pkcs8_pem(LineEnding::LF).unwrap();
        let err = SigningKey::from_pem(&pem).unwrap_err().to_string();
        assert!(err.contains("1024 bits"), "{err}");
    }
}
