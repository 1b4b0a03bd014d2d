//! Wallet keys that sign challenges, for tests and the client example.
//! Each algorithm through its own crate: ed25519-dalek, k256, ml-dsa.

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
            other => panic!("unknown algorithm {other}"),
        }
    }

    /// The wire name of the algorithm.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Wallet::Ed25519(_) => "Ed25519",
            Wallet::Secp256k1 { .. } => "secp256k1",
            Wallet::MlDsa65(_) => "ML-DSA-65",
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
        }
    }

    /// The wallet id: lowercase hex of the public key.
    pub fn address(&self) -> String {
        hex::encode(self.public_key())
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
        }
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
