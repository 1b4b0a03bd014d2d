//! Wallet keys that sign challenges, for tests and the client example.
//! Each algorithm through its own crate: ed25519-dalek, k256, ml-dsa; the
//! Ethereum account's EIP-191 hash and EIP-55 address through sha3, the
//! Solana address through bs58.

#![allow(dead_code)]

use k256::elliptic_curve::ops::Neg;

/// A wallet key of one of the three algorithms.
pub enum Wallet {
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
    /// secp256k1; `compressed` picks the public key encoding.
    Secp256k1 {
        key: k256::ecdsa::SigningKey,
        compressed: bool,
    },
    /// ML-DSA-65 (boxed: the expanded key is large).
    MlDsa65(Box<ml_dsa::SigningKey<ml_dsa::MlDsa65>>),
    /// An Ethereum account (`eip191`): `personal_sign`, r ‖ s ‖ v.
    Eip191(k256::ecdsa::SigningKey),
    /// A Solana account (`solana`): Ed25519, the address its base58 key.
    Solana(ed25519_dalek::SigningKey),
}

/// Keccak-256.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    use sha3::Digest;
    sha3::Keccak256::digest(data).into()
}

/// The EIP-191 (version 0x45) hash `personal_sign` signs.
pub fn personal_hash(message: &[u8]) -> [u8; 32] {
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    prefixed.extend_from_slice(message);
    keccak256(&prefixed)
}

/// EIP-55 of 20 address bytes.
pub fn eip55(address: &[u8]) -> String {
    let lower = hex::encode(address);
    let hash = keccak256(lower.as_bytes());
    let mut out = String::from("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = if i % 2 == 0 {
            hash[i / 2] >> 4
        } else {
            hash[i / 2] & 0x0f
        };
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("OS random source");
    seed
}

impl Wallet {
    /// A fresh key for `algorithm` (`"Ed25519"`, `"secp256k1"`, `"ML-DSA-65"`).
    pub fn generate(algorithm: &str) -> Self {
        Self::from_seed(algorithm, random_seed())
    }

    /// A key derived from a 32-byte seed.
    pub fn from_seed(algorithm: &str, seed: [u8; 32]) -> Self {
        match algorithm {
            "Ed25519" => Wallet::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)),
            "secp256k1" => Wallet::Secp256k1 {
                key: k256::ecdsa::SigningKey::from_slice(&seed).expect("seed is a valid scalar"),
                compressed: true,
            },
            "secp256k1-uncompressed" => Wallet::Secp256k1 {
                key: k256::ecdsa::SigningKey::from_slice(&seed).expect("seed is a valid scalar"),
                compressed: false,
            },
            "ML-DSA-65" => {
                let seed = ml_dsa::B32::from(seed);
                Wallet::MlDsa65(Box::new(ml_dsa::SigningKey::<ml_dsa::MlDsa65>::from_seed(
                    &seed,
                )))
            }
            "eip191" => Wallet::Eip191(
                k256::ecdsa::SigningKey::from_slice(&seed).expect("seed is a valid scalar"),
            ),
            "solana" => Wallet::Solana(ed25519_dalek::SigningKey::from_bytes(&seed)),
            other => panic!("unknown algorithm {other}"),
        }
    }

    /// The wire name of the algorithm.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Wallet::Ed25519(_) => "Ed25519",
            Wallet::Secp256k1 { .. } => "secp256k1",
            Wallet::MlDsa65(_) => "ML-DSA-65",
            Wallet::Eip191(_) => "eip191",
            Wallet::Solana(_) => "solana",
        }
    }

    /// Public key bytes as the server expects them.
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            Wallet::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            Wallet::Secp256k1 { key, compressed } => key
                .verifying_key()
                .to_sec1_point(*compressed)
                .as_bytes()
                .to_vec(),
            Wallet::MlDsa65(k) => {
                use ml_dsa::signature::Keypair;
                k.verifying_key().encode().to_vec()
            }
            // The account's 20 bytes: keccak256 of the uncompressed point.
            Wallet::Eip191(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                keccak256(&point.as_bytes()[1..])[12..].to_vec()
            }
            Wallet::Solana(k) => k.verifying_key().to_bytes().to_vec(),
        }
    }

    /// The wallet id: lowercase hex of the public key; the EIP-55 address
    /// of an Ethereum account; the base58 key of a Solana account.
    pub fn address(&self) -> String {
        match self {
            Wallet::Eip191(_) => eip55(&self.public_key()),
            Wallet::Solana(_) => bs58::encode(self.public_key()).into_string(),
            _ => hex::encode(self.public_key()),
        }
    }

    /// Signs `message`: Ed25519, DER low-S ECDSA over SHA-256, or pure
    /// ML-DSA-65 with an empty context.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Wallet::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(message).to_bytes().to_vec()
            }
            Wallet::Secp256k1 { key, .. } => {
                use k256::ecdsa::signature::Signer;
                let sig: k256::ecdsa::Signature = key.sign(message);
                let sig = sig.normalize_s();
                sig.to_der().as_bytes().to_vec()
            }
            Wallet::MlDsa65(k) => {
                use ml_dsa::signature::Signer;
                k.sign(message).encode().to_vec()
            }
            Wallet::Eip191(k) => {
                let (sig, id) = k.sign_prehash_recoverable(&personal_hash(message));
                let mut out = sig.to_bytes().to_vec();
                out.push(27 + id.to_byte());
                out
            }
            Wallet::Solana(k) => {
                use ed25519_dalek::Signer;
                k.sign(message).to_bytes().to_vec()
            }
        }
    }

    /// The high-S twin of an `eip191` signature (n - s, the other parity):
    /// the same key recovers from it.
    pub fn sign_eip191_high_s(&self, message: &[u8]) -> Vec<u8> {
        let sig = self.sign(message);
        let low = k256::ecdsa::Signature::from_slice(&sig[..64]).expect("signature");
        let (r, s) = low.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), s.as_ref().neg().to_bytes())
            .expect("valid scalars");
        let mut out = high.to_bytes().to_vec();
        out.push(if sig[64] == 27 { 28 } else { 27 });
        out
    }

    /// A high-S twin of a valid secp256k1 signature (same r, n - s).
    pub fn sign_high_s(&self, message: &[u8]) -> Vec<u8> {
        let Wallet::Secp256k1 { key, .. } = self else {
            panic!("secp256k1 only")
        };
        use k256::ecdsa::signature::Signer;
        let sig: k256::ecdsa::Signature = key.sign(message);
        let sig = sig.normalize_s();
        let (r, s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), s.as_ref().neg().to_bytes())
            .expect("valid scalars");
        high.to_der().as_bytes().to_vec()
    }
}
