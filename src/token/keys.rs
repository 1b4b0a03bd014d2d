//! The keys that sign access and fleet tokens, one per algorithm:
//!
//! - `RS256`: an RSA key of at least 2048 bits, signing through aws-lc-rs
//!   (never through the `rsa` crate; see the README's security notes);
//! - `ML-DSA-65` (FIPS 204, RFC 9964): pure ML-DSA with the empty context,
//!   hedged, through the `ml-dsa` crate, the one the wallet verifier uses.
//!
//! Loading and storing (PKCS#8 PEM or DER, files of mode 0600), the `kid`
//! (RFC 7638 thumbprint), the JWK, signing and verifying.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ml_dsa::{
    EncodedSignature, EncodedVerifyingKey, ExpandedSigningKey, MlDsa65, Signature,
    VerifyingKey as MlDsaVerifyingKey,
};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::der::pem::{self, LineEnding};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, ObjectIdentifier, PrivateKeyInfo};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::TokenError;
use crate::ConfigError;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// `rsaEncryption` (RFC 8017).
const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ml-dsa-65` (FIPS 204, RFC 9881).
const MLDSA65_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18");
/// Length of an ML-DSA seed, the private key's stored form.
const SEED_LEN: usize = 32;
/// Length of an ML-DSA-65 public key (FIPS 204).
const MLDSA65_PUBLIC_KEY_LEN: usize = 1952;
/// Length of an ML-DSA-65 signature (FIPS 204).
const SIGNATURE_LEN: usize = 3309;
/// Length of an expanded ML-DSA-65 private key (FIPS 204 skEncode).
const MLDSA65_EXPANDED_LEN: usize = 4032;

/// The algorithm of a token signing key: the JWS `alg` of the tokens it
/// signs and of its JWK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ML-DSA-65, pure, empty context (RFC 9964).
    MlDsa65,
}

impl SigningAlgorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [SigningAlgorithm; 2] = [SigningAlgorithm::Rs256, SigningAlgorithm::MlDsa65];

    /// The JOSE name: `RS256` or `ML-DSA-65`.
    pub const fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::MlDsa65 => "ML-DSA-65",
        }
    }

    /// The algorithm of a JOSE name, compared exactly (`ml-dsa-65` is not one).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JWK key type: `RSA`, or `AKP` (RFC 9964) for ML-DSA.
    pub const fn kty(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RSA",
            SigningAlgorithm::MlDsa65 => "AKP",
        }
    }

    /// Length of a signature, in bytes (RSA: of the 2048-bit modulus; a
    /// larger key signs longer).
    pub const fn signature_len(self) -> usize {
        match self {
            SigningAlgorithm::Rs256 => MIN_RSA_BITS / 8,
            SigningAlgorithm::MlDsa65 => SIGNATURE_LEN,
        }
    }
}

impl serde::Serialize for SigningAlgorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A public key as served in the JWK Set: an `RSA` key (`n`, `e`) or an
/// RFC 9964 `AKP` key (`pub`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Jwk {
    /// `RSA` or `AKP`.
    pub kty: String,
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// `RS256` or `ML-DSA-65`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// RSA modulus, unpadded base64url of its minimal big-endian octets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, same encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// AKP public key, unpadded base64url of its raw bytes (1,952 for ML-DSA-65).
    #[serde(rename = "pub", default, skip_serializing_if = "Option::is_none")]
    pub pub_: Option<String>,
}

impl Jwk {
    /// The JWK of an RSA public key given as big-endian modulus and exponent.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Self {
        let n = B64.encode(strip_leading_zeros(n));
        let e = B64.encode(strip_leading_zeros(e));
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        Self {
            kty: "RSA".into(),
            kid: thumbprint(&canonical),
            alg: SigningAlgorithm::Rs256.name().into(),
            use_: "sig".into(),
            n: Some(n),
            e: Some(e),
            pub_: None,
        }
    }

    /// The RFC 9964 JWK of a raw ML-DSA-65 public key; its kid is the
    /// RFC 7638 thumbprint over the required members `alg`, `kty`, `pub`.
    pub fn from_ml_dsa_65(public_key: &[u8]) -> Self {
        let alg = SigningAlgorithm::MlDsa65.name();
        let pub_ = B64.encode(public_key);
        let canonical = format!(r#"{{"alg":"{alg}","kty":"AKP","pub":"{pub_}"}}"#);
        Self {
            kty: "AKP".into(),
            kid: thumbprint(&canonical),
            alg: alg.into(),
            use_: "sig".into(),
            n: None,
            e: None,
            pub_: Some(pub_),
        }
    }

    /// The algorithm this JWK is for, when `alg` and `kty` name one we know
    /// and agree.
    pub fn algorithm(&self) -> Option<SigningAlgorithm> {
        SigningAlgorithm::from_name(&self.alg).filter(|a| a.kty() == self.kty)
    }
}

fn thumbprint(canonical: &str) -> String {
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// A public key that verifies token signatures: from a [`Jwk`] (a key we
/// published), or the public half of a [`SigningKey`].
#[derive(Clone)]
pub struct VerifyingKey {
    inner: Public,
}

#[derive(Clone)]
enum Public {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    MlDsa65(Box<MlDsaVerifyingKey<MlDsa65>>),
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The key a JWK describes.
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] for an unknown `alg`/`kty` pair, missing
    /// members, a bad encoding, a public key of the wrong length, or an RSA
    /// modulus under [`MIN_RSA_BITS`].
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        let bad = |what: &str| ConfigError::SigningKey(format!("JWK {:?}: {what}", jwk.kid));
        let decode = |member: &Option<String>, name: &str| {
            let text = member
                .as_deref()
                .ok_or_else(|| bad(&format!("no `{name}`")))?;
            B64.decode(text)
                .map_err(|_| bad(&format!("`{name}` is not unpadded base64url")))
        };
        match jwk.algorithm() {
            Some(SigningAlgorithm::Rs256) => {
                let n = decode(&jwk.n, "n")?;
                let e = decode(&jwk.e, "e")?;
                if strip_leading_zeros(&n).len() * 8 < MIN_RSA_BITS {
                    return Err(bad(&format!("RSA modulus under {MIN_RSA_BITS} bits")));
                }
                Ok(Self {
                    inner: Public::Rsa { n, e },
                })
            }
            Some(SigningAlgorithm::MlDsa65) => {
                let raw = decode(&jwk.pub_, "pub")?;
                let enc = EncodedVerifyingKey::<MlDsa65>::try_from(raw.as_slice())
                    .map_err(|_| bad(&format!("`pub` is not {MLDSA65_PUBLIC_KEY_LEN} bytes")))?;
                Ok(Self {
                    inner: Public::MlDsa65(Box::new(MlDsaVerifyingKey::decode(&enc))),
                })
            }
            None => Err(bad(&format!(
                "unknown key type {:?} / algorithm {:?}",
                jwk.kty, jwk.alg
            ))),
        }
    }

    /// The algorithm of the signatures this key verifies.
    pub fn algorithm(&self) -> SigningAlgorithm {
        match self.inner {
            Public::Rsa { .. } => SigningAlgorithm::Rs256,
            Public::MlDsa65(_) => SigningAlgorithm::MlDsa65,
        }
    }

    /// Verifies `signature` over `msg` (for a JWS, the ASCII signing input
    /// `header.payload`). ML-DSA-65 is pure with the empty context.
    ///
    /// # Errors
    /// [`TokenError::BadSignature`] when it does not verify, whatever the
    /// reason (wrong length included).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), TokenError> {
        let ok = match &self.inner {
            Public::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, msg, signature)
                .is_ok(),
            Public::MlDsa65(key) => {
                // Lengths and encodings before any math.
                let sig = EncodedSignature::<MlDsa65>::try_from(signature)
                    .ok()
                    .and_then(|enc| Signature::<MlDsa65>::decode(&enc));
                sig.is_some_and(|sig| key.verify_with_context(msg, &[], &sig))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

/// The private key that signs access and fleet tokens, RS256 or
/// ML-DSA-65. `Debug` is redacted; the PKCS#8 bytes and the expanded
/// ML-DSA key are zeroized on drop.
pub struct SigningKey {
    private: Private,
    public: VerifyingKey,
    pkcs8_der: Zeroizing<Vec<u8>>,
    jwk: Jwk,
}

enum Private {
    Rsa {
        pair: RsaKeyPair,
        n: Vec<u8>,
        e: Vec<u8>,
    },
    MlDsa65(Box<ExpandedSigningKey<MlDsa65>>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PEM private key: PKCS#8 `PRIVATE KEY` (RSA or ML-DSA-65), or
    /// PKCS#1 `RSA PRIVATE KEY`. RSA keys need at least 2048 bits.
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] when the PEM does not parse, holds another
    /// kind of key, or the key is weak.
    pub fn from_pem(pem_text: &str) -> Result<Self, ConfigError> {
        let (label, der) = pem::decode_vec(pem_text.as_bytes()).map_err(|e| {
            ConfigError::SigningKey(format!("not a PKCS#8 or PKCS#1 PEM private key: {e}"))
        })?;
        let der = Zeroizing::new(der);
        match label {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "RSA PRIVATE KEY" => {
                let key = RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| {
                    ConfigError::SigningKey(format!("not a PKCS#1 RSA private key: {e}"))
                })?;
                Self::from_rsa(&key)
            }
            other => Err(ConfigError::SigningKey(format!(
                "PEM label {other:?}: expected PRIVATE KEY (PKCS#8) or RSA PRIVATE KEY (PKCS#1)"
            ))),
        }
    }

    /// Loads a PKCS#8 DER private key, RSA or ML-DSA-65 (the algorithm is
    /// the one its `AlgorithmIdentifier` names).
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] when the DER does not parse, names
    /// another algorithm, or the key is weak or inconsistent.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, ConfigError> {
        let info = PrivateKeyInfo::try_from(der)
            .map_err(|e| ConfigError::SigningKey(format!("not a PKCS#8 private key: {e}")))?;
        let oid = info.algorithm.oid;
        if oid == RSA_OID {
            let key = RsaPrivateKey::from_pkcs8_der(der).map_err(|e| {
                ConfigError::SigningKey(format!("not a PKCS#8 RSA private key: {e}"))
            })?;
            Self::from_rsa(&key)
        } else if oid == MLDSA65_OID {
            if info.algorithm.parameters.is_some() {
                return Err(ConfigError::SigningKey(
                    "ML-DSA-65 PKCS#8 key with algorithm parameters (RFC 9881: absent)".into(),
                ));
            }
            let seed = mldsa65_seed(info.private_key)?;
            Ok(Self::from_ml_dsa_65_seed(&seed))
        } else {
            Err(ConfigError::SigningKey(format!(
                "PKCS#8 key of algorithm {oid}: only RSA ({RSA_OID}) and ML-DSA-65 \
                 ({MLDSA65_OID}) sign tokens"
            )))
        }
    }

    /// Loads the key in `path`: PEM (as [`from_pem`](Self::from_pem)) or
    /// PKCS#8 DER.
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] naming the file when it cannot be read or
    /// holds no usable key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            ConfigError::SigningKey(format!("cannot read {}: {e}", path.display()))
        })?);
        let key = match std::str::from_utf8(&bytes) {
            Ok(text) if text.trim_start().starts_with("-----BEGIN") => Self::from_pem(text),
            _ => Self::from_pkcs8_der(&bytes),
        };
        key.map_err(|e| ConfigError::SigningKey(format!("{}: {e}", path.display())))
    }

    /// Writes the key to `path` as PKCS#8 PEM, readable by its owner only
    /// (0600), crash-safe: a new file beside it, fsync'd, renamed over
    /// `path`, and the directory fsync'd.
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] naming the file when a step fails; a
    /// failed store leaves `path` as it was.
    pub fn store(&self, path: &Path) -> Result<(), ConfigError> {
        let pem = self.to_pkcs8_pem()?;
        let err = |e: std::io::Error| {
            ConfigError::SigningKey(format!("cannot write {}: {e}", path.display()))
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| {
            err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file name",
            ))
        })?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let written = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(pem.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }

    /// Generates a fresh RSA key of `bits` bits (2048 at least).
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

    /// Generates a fresh ML-DSA-65 key from 32 bytes of the OS random source.
    ///
    /// # Errors
    /// [`ConfigError::SigningKey`] when the OS random source fails.
    pub fn generate_ml_dsa_65() -> Result<Self, ConfigError> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        getrandom::fill(seed.as_mut_slice())
            .map_err(|e| ConfigError::SigningKey(format!("OS random source failed: {e}")))?;
        Ok(Self::from_ml_dsa_65_seed(&seed))
    }

    /// Generates a fresh key of `algorithm` (RSA: 2048 bits).
    ///
    /// # Errors
    /// As [`generate`](Self::generate) and
    /// [`generate_ml_dsa_65`](Self::generate_ml_dsa_65).
    pub fn generate_for(algorithm: SigningAlgorithm) -> Result<Self, ConfigError> {
        match algorithm {
            SigningAlgorithm::Rs256 => Self::generate(MIN_RSA_BITS),
            SigningAlgorithm::MlDsa65 => Self::generate_ml_dsa_65(),
        }
    }

    /// The ML-DSA-65 key of a 32-byte seed (FIPS 204 ML-DSA.KeyGen_internal).
    pub fn from_ml_dsa_65_seed(seed: &[u8; SEED_LEN]) -> Self {
        let expanded = ExpandedSigningKey::<MlDsa65>::from_seed(&(*seed).into());
        let verifying = expanded.verifying_key();
        let jwk = Jwk::from_ml_dsa_65(&verifying.encode());
        Self {
            private: Private::MlDsa65(Box::new(expanded)),
            public: VerifyingKey {
                inner: Public::MlDsa65(Box::new(verifying)),
            },
            pkcs8_der: mldsa65_pkcs8(seed),
            jwk,
        }
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
            public: VerifyingKey {
                inner: Public::Rsa {
                    n: n.clone(),
                    e: e.clone(),
                },
            },
            private: Private::Rsa { pair, n, e },
            pkcs8_der,
            jwk,
        })
    }

    /// The key as PKCS#8 PEM, for persisting it. An ML-DSA-65 key is
    /// written in the seed form of RFC 9881 (`[0] IMPLICIT OCTET STRING`).
    ///
    /// # Errors
    /// Only if PEM encoding fails.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, ConfigError> {
        pem::encode_string("PRIVATE KEY", LineEnding::LF, &self.pkcs8_der)
            .map(Zeroizing::new)
            .map_err(|e| ConfigError::SigningKey(e.to_string()))
    }

    /// The key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        self.pkcs8_der.clone()
    }

    /// The algorithm of the tokens this key signs.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.public.algorithm()
    }

    /// The RFC 7638 thumbprint used as `kid`.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The public half as a JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The public half, for verifying.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Big-endian modulus and exponent of an RSA key; `None` for ML-DSA-65.
    pub fn public_components(&self) -> Option<(&[u8], &[u8])> {
        match &self.private {
            Private::Rsa { n, e, .. } => Some((n, e)),
            Private::MlDsa65(_) => None,
        }
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

    /// Length of this key's signatures, in bytes.
    pub fn signature_len(&self) -> usize {
        match &self.private {
            Private::Rsa { pair, .. } => pair.public_modulus_len(),
            Private::MlDsa65(_) => SIGNATURE_LEN,
        }
    }

    /// Signs `msg` (for a JWS, the ASCII signing input): RS256 is
    /// RSASSA-PKCS1-v1_5 with SHA-256 (constant time, aws-lc); ML-DSA-65 is
    /// pure, empty context, hedged with 32 bytes of the OS random source.
    /// CPU-heavy (about a millisecond): call it off the async worker threads.
    ///
    /// # Errors
    /// [`TokenError::Signing`] if the signature cannot be made.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, TokenError> {
        match &self.private {
            Private::Rsa { pair, .. } => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
                    .map_err(|_| TokenError::Signing)?;
                Ok(sig)
            }
            Private::MlDsa65(key) => {
                let mut rng = ml_dsa::common::getrandom::SysRng;
                let sig = key
                    .sign_randomized(msg, &[], &mut rng)
                    .map_err(|_| TokenError::Signing)?;
                Ok(sig.encode().to_vec())
            }
        }
    }

    /// Verifies `signature` over `msg` with the public half.
    ///
    /// # Errors
    /// [`TokenError::BadSignature`] when it does not verify.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), TokenError> {
        self.public.verify(msg, signature)
    }
}

/// The seed of an ML-DSA-65 PKCS#8 `privateKey` (RFC 9881): the seed form
/// `[0] IMPLICIT OCTET STRING (32)`, or the `both` form `SEQUENCE { seed,
/// expandedKey }` (OpenSSL's default) when its expanded key is the one the
/// seed gives. The expanded form alone is refused: without the seed the key
/// cannot be stored the way we store keys.
fn mldsa65_seed(private_key: &[u8]) -> Result<Zeroizing<[u8; SEED_LEN]>, ConfigError> {
    let bad = |what: &str| ConfigError::SigningKey(format!("ML-DSA-65 PKCS#8 key: {what}"));
    let mut seed = Zeroizing::new([0u8; SEED_LEN]);
    // DER lengths are minimal, so each form has exactly one encoding.
    const BOTH_LEN: usize = 4 + 2 + SEED_LEN + 4 + MLDSA65_EXPANDED_LEN;
    match private_key {
        [0x80, 0x20, rest @ ..] if rest.len() == SEED_LEN => {
            seed.copy_from_slice(rest);
            Ok(seed)
        }
        [0x30, 0x82, 0x0f, 0xe6, 0x04, 0x20, rest @ ..] if private_key.len() == BOTH_LEN => {
            let (s, tail) = rest.split_at(SEED_LEN);
            let [0x04, 0x82, 0x0f, 0xc0, expanded @ ..] = tail else {
                return Err(bad("malformed `both` form"));
            };
            seed.copy_from_slice(s);
            let derived = ExpandedSigningKey::<MlDsa65>::from_seed(&(*seed).into());
            #[allow(deprecated)] // the one way to compare with a stored expanded key
            let encoded = Zeroizing::new(derived.to_expanded().to_vec());
            if bool::from(subtle::ConstantTimeEq::ct_eq(encoded.as_slice(), expanded)) {
                Ok(seed)
            } else {
                Err(bad("the expanded key is not the one its seed gives"))
            }
        }
        [0x04, ..] => Err(bad(
            "expanded form without the seed is not supported; export the seed form",
        )),
        _ => Err(bad(
            "malformed private key (expected the seed form of RFC 9881)",
        )),
    }
}

/// PKCS#8 DER of an ML-DSA-65 seed, in the seed form (what Python
/// `cryptography` and OpenSSL read and, for `cryptography`, write).
fn mldsa65_pkcs8(seed: &[u8; SEED_LEN]) -> Zeroizing<Vec<u8>> {
    const PREFIX: [u8; 22] = [
        0x30, 0x34, // PrivateKeyInfo, 52 bytes
        0x02, 0x01, 0x00, // version 0
        0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03,
        0x12, // AlgorithmIdentifier { id-ml-dsa-65 }, no parameters
        0x04, 0x22, // privateKey OCTET STRING, 34 bytes
        0x80, 0x20, // [0] IMPLICIT OCTET STRING seed, 32 bytes
    ];
    let mut der = Zeroizing::new(Vec::with_capacity(PREFIX.len() + SEED_LEN));
    der.extend_from_slice(&PREFIX);
    der.extend_from_slice(seed);
    der
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

    #[test]
    fn ml_dsa_jwk_is_rfc9964_with_its_thumbprint_as_kid() {
        let key = SigningKey::from_ml_dsa_65_seed(&[7u8; 32]);
        assert_eq!(key.algorithm(), SigningAlgorithm::MlDsa65);
        let jwk = serde_json::to_value(key.jwk()).unwrap();
        let members: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut sorted = members.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["alg", "kid", "kty", "pub", "use"], "{jwk}");
        assert_eq!(jwk["kty"], "AKP");
        assert_eq!(jwk["alg"], "ML-DSA-65");
        assert_eq!(jwk["use"], "sig");
        let pub_ = jwk["pub"].as_str().unwrap();
        assert!(!pub_.contains('='));
        assert_eq!(B64.decode(pub_).unwrap().len(), 1952);
        // The thumbprint, recomputed from the members as RFC 7638 orders them.
        let canonical = serde_json::to_string(&serde_json::json!({
            "alg": "ML-DSA-65", "kty": "AKP", "pub": pub_,
        }))
        .unwrap();
        assert_eq!(key.kid(), B64.encode(Sha256::digest(canonical.as_bytes())));
        // The same seed, the same key; another seed, another kid.
        assert_eq!(SigningKey::from_ml_dsa_65_seed(&[7u8; 32]).jwk(), key.jwk());
        assert_ne!(SigningKey::from_ml_dsa_65_seed(&[8u8; 32]).kid(), key.kid());
        assert_eq!(
            VerifyingKey::from_jwk(key.jwk()).unwrap().algorithm(),
            SigningAlgorithm::MlDsa65
        );
    }

    #[test]
    fn ml_dsa_signs_pure_with_the_empty_context() {
        let key = SigningKey::generate_ml_dsa_65().unwrap();
        let msg = b"header.payload";
        let sig = key.sign(msg).unwrap();
        assert_eq!(sig.len(), SIGNATURE_LEN);
        key.verify(msg, &sig).unwrap();
        // The wallet verifier (pure, empty context) agrees: one ML-DSA-65.
        let public = B64.decode(key.jwk().pub_.as_deref().unwrap()).unwrap();
        crate::wallet::verify_ml_dsa_65(&public, msg, &sig).unwrap();
        // Hedged: two signatures of one message differ, both verify.
        let again = key.sign(msg).unwrap();
        assert_ne!(sig, again);
        key.verify(msg, &again).unwrap();
        // Another message, a flipped bit, a short or long signature: refused.
        assert_eq!(
            key.verify(b"header.payloaD", &sig),
            Err(TokenError::BadSignature)
        );
        let mut flipped = sig.clone();
        flipped[100] ^= 1;
        assert_eq!(key.verify(msg, &flipped), Err(TokenError::BadSignature));
        assert_eq!(key.verify(msg, &sig[1..]), Err(TokenError::BadSignature));
        assert_eq!(
            key.verify(msg, &[sig.clone(), vec![0]].concat()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(key.verify(msg, &[]), Err(TokenError::BadSignature));
        // An RSA key does not verify it, nor the other way round.
        let rsa = SigningKey::generate(2048).unwrap();
        assert_eq!(rsa.verify(msg, &sig), Err(TokenError::BadSignature));
        let rsa_sig = rsa.sign(msg).unwrap();
        rsa.verify(msg, &rsa_sig).unwrap();
        assert_eq!(key.verify(msg, &rsa_sig), Err(TokenError::BadSignature));
    }

    #[test]
    fn pkcs8_round_trips_in_pem_and_der_for_both_algorithms() {
        for key in [
            SigningKey::generate_ml_dsa_65().unwrap(),
            SigningKey::generate(2048).unwrap(),
        ] {
            let pem = key.to_pkcs8_pem().unwrap();
            assert!(
                pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
                "{}",
                key.algorithm()
            );
            let from_pem = SigningKey::from_pem(&pem).unwrap();
            assert_eq!(from_pem.jwk(), key.jwk());
            assert_eq!(from_pem.algorithm(), key.algorithm());
            let from_der = SigningKey::from_pkcs8_der(&key.to_pkcs8_der()).unwrap();
            assert_eq!(from_der.jwk(), key.jwk());
            // Same key, same refresh secret.
            assert_eq!(from_der.derive_secret(b"l"), key.derive_secret(b"l"));
        }
    }

    #[test]
    fn ml_dsa_pkcs8_is_the_rfc9881_seed_form() {
        let key = SigningKey::from_ml_dsa_65_seed(&[0x11; 32]);
        let der = key.to_pkcs8_der();
        assert_eq!(der.len(), 54);
        // The algorithm identifier parses as id-ml-dsa-65 without parameters.
        let info = PrivateKeyInfo::try_from(der.as_slice()).unwrap();
        assert_eq!(info.algorithm.oid, MLDSA65_OID);
        assert!(info.algorithm.parameters.is_none());
        assert_eq!(
            info.private_key,
            [&[0x80u8, 0x20][..], &[0x11; 32]].concat()
        );
    }

    #[test]
    fn ml_dsa_both_form_is_read_when_consistent() {
        let seed = [0x22u8; 32];
        let expanded = {
            let k = ExpandedSigningKey::<MlDsa65>::from_seed(&seed.into());
            #[allow(deprecated)]
            let bytes = k.to_expanded().to_vec();
            bytes
        };
        let both = |exp: &[u8]| {
            let mut inner = vec![0x30, 0x82, 0x0f, 0xe6, 0x04, 0x20];
            inner.extend_from_slice(&seed);
            inner.extend_from_slice(&[0x04, 0x82, 0x0f, 0xc0]);
            inner.extend_from_slice(exp);
            inner
        };
        let key = SigningKey::from_ml_dsa_65_seed(&seed);
        assert_eq!(mldsa65_seed(&both(&expanded)).unwrap().as_slice(), seed);
        let mut wrong = expanded.clone();
        wrong[40] ^= 1;
        assert!(mldsa65_seed(&both(&wrong)).is_err());
        assert!(mldsa65_seed(&both(&expanded[1..])).is_err());
        let mut expanded_only = vec![0x04, 0x82, 0x0f, 0xc0];
        expanded_only.extend_from_slice(&expanded);
        let err = mldsa65_seed(&expanded_only).unwrap_err().to_string();
        assert!(err.contains("seed"), "{err}");
        assert!(mldsa65_seed(&[0x80, 0x1f]).is_err());
        assert!(mldsa65_seed(&[]).is_err());
        assert_eq!(key.kid(), SigningKey::from_ml_dsa_65_seed(&seed).kid());
    }

    #[test]
    fn other_pkcs8_algorithms_and_bad_jwks_are_refused() {
        // An Ed25519 PKCS#8 key (RFC 8410 example).
        let ed = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let err = SigningKey::from_pem(ed).unwrap_err().to_string();
        assert!(err.contains("1.3.101.112"), "{err}");
        let mut jwk = SigningKey::from_ml_dsa_65_seed(&[1; 32]).jwk().clone();
        jwk.kty = "RSA".into();
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        jwk.kty = "AKP".into();
        jwk.pub_ = Some("AAAA".into());
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        jwk.pub_ = None;
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        jwk.alg = "ML-DSA-87".into();
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
    }

    #[test]
    fn store_writes_0600_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let first = SigningKey::generate_ml_dsa_65().unwrap();
        first.store(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(SigningKey::load(&path).unwrap().jwk(), first.jwk());
        let second = SigningKey::generate_ml_dsa_65().unwrap();
        second.store(&path).unwrap();
        assert_eq!(SigningKey::load(&path).unwrap().jwk(), second.jwk());
        // DER files load too; nothing but the key is left in the directory.
        let der_path = dir.path().join("key.der");
        std::fs::write(&der_path, second.to_pkcs8_der().as_slice()).unwrap();
        assert_eq!(SigningKey::load(&der_path).unwrap().kid(), second.kid());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let err = SigningKey::load(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
