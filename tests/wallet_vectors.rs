//! Known-answer wallet signatures made by Python's `cryptography`
//! (`fixtures/wallet/make_signatures.py`), and property tests that arbitrary
//! bytes never panic a verifier.

use proptest::prelude::*;
use serde::Deserialize;
use wallet_auth::wallet::{
    check_encoding, verify, verify_ed25519, verify_ml_dsa_65, verify_secp256k1, Algorithm,
    VerifyError,
};

const FIXTURE: &str = include_str!("../fixtures/wallet/signatures.json");

#[derive(Deserialize)]
struct Fixture {
    cryptography: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    algorithm: Algorithm,
    public_key: String,
    message: String,
    signature: String,
    expect: String,
    comment: String,
}

impl Case {
    fn public_key(&self) -> Vec<u8> {
        hex::decode(&self.public_key).expect("fixture public key is hex")
    }

    fn signature(&self) -> Vec<u8> {
        hex::decode(&self.signature).expect("fixture signature is hex")
    }
}

fn fixture() -> Fixture {
    serde_json::from_str(FIXTURE).expect("fixtures/wallet/signatures.json parses")
}

fn outcome(result: &Result<(), VerifyError>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn python_cryptography_signatures() {
    let fixture = fixture();
    let mut failures = Vec::new();
    let mut ok = 0;
    for case in &fixture.cases {
        assert_eq!(case.message.len(), 64, "{}: challenge length", case.id);
        assert!(
            case.message
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                || case.id.ends_with("uppercase-message"),
            "{}: challenge is lowercase hex",
            case.id
        );
        let pk = case.public_key();
        let sig = case.signature();
        // Every fixture case is well-formed; only the math or policy refuses.
        assert_eq!(
            check_encoding(case.algorithm, &pk, &sig),
            Ok(()),
            "{}: check_encoding",
            case.id
        );
        let got = outcome(&verify(case.algorithm, &pk, case.message.as_bytes(), &sig));
        if got == case.expect {
            ok += usize::from(got == "ok");
        } else {
            failures.push(format!(
                "{} ({}): expected {}, got {got}",
                case.id, case.comment, case.expect
            ));
        }
    }
    println!(
        "python cryptography {}: {} cases, {ok} verified, {} refused as expected",
        fixture.cryptography,
        fixture.cases.len(),
        fixture.cases.len() - ok - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fixture covers what the brief asks for, so a regenerated file can't
/// silently lose a class of cases.
#[test]
fn fixture_covers_every_algorithm_and_twin() {
    let fixture = fixture();
    let count = |alg: Algorithm, expect: &str| {
        fixture
            .cases
            .iter()
            .filter(|c| c.algorithm == alg && c.expect == expect)
            .count()
    };
    // The pico algorithms: the account algorithms (eip191, solana) sign a
    // message and have their own vectors in tests/siwe.rs.
    for alg in Algorithm::ALL.into_iter().filter(|a| a.is_pico()) {
        assert!(count(alg, "ok") >= 3, "{alg}: valid cases");
        assert!(count(alg, "BadSignature") >= 3, "{alg}: must-fail cases");
    }
    assert!(count(Algorithm::Secp256k1, "HighS") >= 4);
    let key_lens = |len: usize| {
        fixture
            .cases
            .iter()
            .filter(|c| {
                c.algorithm == Algorithm::Secp256k1
                    && c.expect == "ok"
                    && c.public_key().len() == len
            })
            .count()
    };
    assert!(key_lens(33) >= 2, "compressed secp256k1 keys");
    assert!(key_lens(65) >= 2, "uncompressed secp256k1 keys");
    assert!(fixture.cases.iter().any(|c| c.id.ends_with("s-plus-l")));
    assert!(fixture
        .cases
        .iter()
        .any(|c| c.id.ends_with("non-empty-context")));
}

type Verifier = fn(&[u8], &[u8], &[u8]) -> Result<(), VerifyError>;

fn verifier(alg: Algorithm) -> Verifier {
    match alg {
        Algorithm::Ed25519 => verify_ed25519,
        Algorithm::Secp256k1 => verify_secp256k1,
        Algorithm::MlDsa65 => verify_ml_dsa_65,
        _ => unreachable!("no other algorithm"),
    }
}

fn any_algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(
        Algorithm::ALL
            .into_iter()
            .filter(|a| a.is_pico())
            .collect::<Vec<_>>(),
    )
}

/// Byte strings of arbitrary length, plus ones of exactly the lengths the
/// verifiers accept, so the arithmetic behind the length checks runs too.
fn bytes_near(lens: &'static [usize]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        prop::sample::select(lens).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
    ]
}

fn public_key_bytes() -> impl Strategy<Value = Vec<u8>> {
    bytes_near(&[32, 33, 65, 1952]).prop_map(|mut v| {
        // Give the SEC1 prefix a fair chance.
        match v.len() {
            33 => v[0] = 0x02 | (v[0] & 1),
            65 => v[0] = 0x04,
            _ => {}
        }
        v
    })
}

fn signature_bytes() -> impl Strategy<Value = Vec<u8>> {
    bytes_near(&[64, 70, 71, 72, 3309]).prop_map(|mut v| {
        // Half the DER-sized ones get a SEQUENCE header.
        if (70..=72).contains(&v.len()) && v[1] & 1 == 0 {
            v[0] = 0x30;
            v[1] = u8::try_from(v.len() - 2).unwrap_or(0);
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes never panic a verifier or `check_encoding`, and never
    /// verify.
    #[test]
    fn arbitrary_bytes_never_panic(
        alg in any_algorithm(),
        pk in public_key_bytes(),
        msg in prop::collection::vec(any::<u8>(), 0..100),
        sig in signature_bytes(),
    ) {
        let _ = check_encoding(alg, &pk, &sig);
        prop_assert!(verify(alg, &pk, &msg, &sig).is_err());
        for alg in Algorithm::ALL.into_iter().filter(|a| a.is_pico()) {
            prop_assert!(verifier(alg)(&pk, &msg, &sig).is_err());
        }
    }

    /// One flipped byte in the key, message or signature of a valid fixture
    /// case never panics and never verifies.
    #[test]
    fn mutated_fixture_never_verifies(
        pick in any::<prop::sample::Index>(),
        part in 0..3usize,
        at in any::<prop::sample::Index>(),
        xor in 1..=255u8,
    ) {
        let fixture = fixture();
        let valid: Vec<&Case> = fixture.cases.iter().filter(|c| c.expect == "ok").collect();
        let case = pick.get(&valid);
        let mut pk = case.public_key();
        let mut msg = case.message.as_bytes().to_vec();
        let mut sig = case.signature();
        let target = match part {
            0 => &mut pk,
            1 => &mut msg,
            _ => &mut sig,
        };
        let i = at.index(target.len());
        target[i] ^= xor;
        let _ = check_encoding(case.algorithm, &pk, &sig);
        prop_assert!(
            verify(case.algorithm, &pk, &msg, &sig).is_err(),
            "{} verified with byte {} of part {} xor {:#04x}", case.id, i, part, xor
        );
    }
}
