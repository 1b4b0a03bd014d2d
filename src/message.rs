//! The domain-bound sign-in messages of SPEC 9: EIP-4361 (Sign-In with
//! Ethereum) for `eip191`, Sign-In With Solana for `solana`, and the
//! EIP-4361 layout naming a key for the pico algorithms.
//!
//! A message is a pure function of the configuration (domain, URI,
//! statement), the wallet id, the nonce and the [`ChallengeMeta`] the
//! challenge store keeps: it is written once into the `/challenge` reply
//! and, at `/sign-in`, written again into a comparator that checks the
//! presented text byte for byte without allocating.

use std::fmt::{self, Write};

use crate::challenge::ChallengeMeta;
use crate::wallet::Algorithm;
use crate::{AuthConfig, ConfigError};

/// Which text a challenge was issued with (stored in its [`ChallengeMeta`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// EIP-4361 layout, "… with your wallet key:" (`/challenge` named no algorithm).
    Wallet,
    /// EIP-4361 layout naming a pico algorithm's key.
    Key(Algorithm),
    /// EIP-4361 proper, with a Chain ID.
    Ethereum,
    /// Sign-In With Solana.
    Solana,
}

impl Layout {
    /// The layout `/challenge` issues for `algorithm`.
    pub(crate) fn for_algorithm(algorithm: Option<Algorithm>) -> Self {
        match algorithm {
            None => Layout::Wallet,
            Some(Algorithm::Eip191) => Layout::Ethereum,
            Some(Algorithm::Solana) => Layout::Solana,
            Some(a) => Layout::Key(a),
        }
    }

    /// Whether a sign-in with `algorithm` may present a message of this layout.
    pub(crate) fn admits(self, algorithm: Algorithm) -> bool {
        match self {
            Layout::Wallet => algorithm.is_pico(),
            Layout::Key(a) => a == algorithm,
            Layout::Ethereum => algorithm == Algorithm::Eip191,
            Layout::Solana => algorithm == Algorithm::Solana,
        }
    }

    /// The tag a store keeps (0 is "no message").
    pub(crate) fn tag(self) -> u8 {
        match self {
            Layout::Wallet => 1,
            Layout::Key(Algorithm::MlDsa65) => 2,
            Layout::Key(Algorithm::Ed25519) => 3,
            Layout::Key(_) => 4,
            Layout::Ethereum => 5,
            Layout::Solana => 6,
        }
    }

    /// The layout of a stored tag; `None` for 0 (a challenge issued without
    /// a message) or an unknown tag.
    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => Layout::Wallet,
            2 => Layout::Key(Algorithm::MlDsa65),
            3 => Layout::Key(Algorithm::Ed25519),
            4 => Layout::Key(Algorithm::Secp256k1),
            5 => Layout::Ethereum,
            6 => Layout::Solana,
            _ => return None,
        })
    }
}

/// The configured parts of every message, checked at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageSettings {
    domain: String,
    uri: String,
    statement: Option<String>,
}

impl MessageSettings {
    /// The settings of `config`: `domain` (default: the issuer's
    /// host[:port]), `uri` (default: the issuer) and `statement`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field EIP-4361's grammar refuses.
    pub(crate) fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        let domain = if config.domain.is_empty() {
            authority_of(&config.issuer).ok_or_else(|| {
                ConfigError::invalid(
                    "domain",
                    format!(
                        "is empty and the issuer {:?} names no host to default to: set domain",
                        config.issuer
                    ),
                )
            })?
        } else {
            config.domain.clone()
        };
        if !is_authority(&domain) {
            return Err(ConfigError::invalid(
                "domain",
                format!(
                    "{domain:?} is not an RFC 3986 authority (host[:port]) as EIP-4361 requires"
                ),
            ));
        }
        let uri = if config.uri.is_empty() {
            config.issuer.clone()
        } else {
            config.uri.clone()
        };
        if !is_uri(&uri) {
            return Err(ConfigError::invalid(
                "uri",
                format!("{uri:?} is not an absolute RFC 3986 URI as EIP-4361 requires"),
            ));
        }
        let statement = match config.statement.as_str() {
            "" => None,
            s if s.bytes().all(is_statement_byte) => Some(s.to_string()),
            s => {
                return Err(ConfigError::invalid(
                    "statement",
                    format!(
                        "{s:?} is refused by EIP-4361's grammar: one line of ASCII letters, \
                         digits, spaces and -._~:/?#[]@!$&'()*+,;= only (no line break, no \")"
                    ),
                ))
            }
        };
        Ok(Self {
            domain,
            uri,
            statement,
        })
    }

    /// Writes the message of a challenge to `w`. `meta` must carry a
    /// layout ([`ChallengeMeta::layout`]); a bare one writes nothing.
    pub(crate) fn write_to<W: Write>(
        &self,
        w: &mut W,
        meta: &ChallengeMeta,
        address: &str,
        nonce: &str,
    ) -> fmt::Result {
        let Some(layout) = meta.layout() else {
            return Err(fmt::Error);
        };
        let domain = &self.domain;
        let issued = Rfc3339(meta.issued_at());
        let expires = Rfc3339(meta.issued_at().saturating_add(u64::from(meta.ttl_secs())));
        if layout == Layout::Solana {
            // wallet-standard's createSignInMessageText: no blank line
            // for a missing statement beyond the one before the fields.
            write!(
                w,
                "{domain} wants you to sign in with your Solana account:\n{address}"
            )?;
            if let Some(statement) = &self.statement {
                write!(w, "\n\n{statement}")?;
            }
            return write!(
                w,
                "\n\nURI: {}\nVersion: 1\nChain ID: mainnet\nNonce: {nonce}\n\
                 Issued At: {issued}\nExpiration Time: {expires}",
                self.uri
            );
        }
        let account = match layout {
            Layout::Ethereum => "Ethereum account",
            Layout::Key(Algorithm::MlDsa65) => "ML-DSA-65 key",
            Layout::Key(Algorithm::Ed25519) => "Ed25519 key",
            Layout::Key(_) => "secp256k1 key",
            _ => "wallet key",
        };
        // EIP-4361: address LF, LF, [statement LF], LF, "URI: " — two blank
        // lines when there is no statement.
        write!(
            w,
            "{domain} wants you to sign in with your {account}:\n{address}\n\n"
        )?;
        if let Some(statement) = &self.statement {
            writeln!(w, "{statement}")?;
        }
        write!(w, "\nURI: {}\nVersion: 1\n", self.uri)?;
        if layout == Layout::Ethereum {
            writeln!(w, "Chain ID: {}", meta.chain_id())?;
        }
        write!(
            w,
            "Nonce: {nonce}\nIssued At: {issued}\nExpiration Time: {expires}"
        )
    }

    /// The message of a challenge, as `/challenge` returns it.
    pub(crate) fn render(&self, meta: &ChallengeMeta, address: &str, nonce: &str) -> String {
        let mut out = String::with_capacity(320 + address.len() + self.uri.len());
        // Writing to a String fails only for a bare meta, which issues none.
        let _ = self.write_to(&mut out, meta, address, nonce);
        out
    }

    /// Whether `presented` is, byte for byte, the message of this challenge.
    /// Allocates nothing.
    pub(crate) fn matches(
        &self,
        presented: &str,
        meta: &ChallengeMeta,
        address: &str,
        nonce: &str,
    ) -> bool {
        let mut rest = Comparator(presented.as_bytes());
        self.write_to(&mut rest, meta, address, nonce).is_ok() && rest.0.is_empty()
    }
}

/// A `fmt::Write` that consumes a prefix of its bytes per write and fails
/// at the first difference.
struct Comparator<'a>(&'a [u8]);

impl Write for Comparator<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.0.strip_prefix(s.as_bytes()) {
            Some(rest) => {
                self.0 = rest;
                Ok(())
            }
            None => Err(fmt::Error),
        }
    }
}

/// Epoch seconds as an RFC 3339 UTC date-time, `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) struct Rfc3339(pub(crate) u64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / 86_400;
        let secs = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`, for days >= 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The authority (host[:port], no userinfo) of an absolute URL.
fn authority_of(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_string())
}

/// RFC 3986 `authority` characters (unreserved, pct-encoded, sub-delims,
/// ":", "@", and the brackets of an IP literal).
fn is_authority(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@[]".contains(&b))
}

/// An absolute URI: a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`),
/// a colon, and URI characters only.
fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut scheme_bytes = scheme.bytes();
    scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?#[]".contains(&b))
}

/// EIP-4361 `statement = *( reserved / unreserved / " " )`.
fn is_statement_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" -._~:/?#[]@!$&'()*+,;=".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn settings(statement: &str) -> MessageSettings {
        MessageSettings::from_config(&AuthConfig {
            statement: statement.into(),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Rfc3339(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(Rfc3339(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(Rfc3339(4_102_444_799).to_string(), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn the_ethereum_message_is_eip4361() {
        let meta = ChallengeMeta::new(Layout::Ethereum, 1_700_000_000, 60, 137);
        let address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let want = format!(
            "localhost:8100 wants you to sign in with your Ethereum account:\n{address}\n\n\n\
             URI: http://localhost:8100\nVersion: 1\nChain ID: 137\nNonce: {NONCE}\n\
             Issued At: 2023-11-14T22:13:20Z\nExpiration Time: 2023-11-14T22:14:20Z"
        );
        let s = settings("");
        assert_eq!(s.render(&meta, address, NONCE), want);
        assert!(s.matches(&want, &meta, address, NONCE));
        // With a statement: one blank line on each side of it.
        let with = settings("Sign in to Example");
        let text = with.render(&meta, address, NONCE);
        assert!(
            text.contains(&format!("{address}\n\nSign in to Example\n\nURI: ")),
            "{text}"
        );
    }

    #[test]
    fn the_solana_message_is_siws() {
        let meta = ChallengeMeta::new(Layout::Solana, 1_700_000_000, 60, 0);
        let address = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin";
        assert_eq!(
            settings("").render(&meta, address, NONCE),
            format!(
                "localhost:8100 wants you to sign in with your Solana account:\n{address}\n\n\
                 URI: http://localhost:8100\nVersion: 1\nChain ID: mainnet\nNonce: {NONCE}\n\
                 Issued At: 2023-11-14T22:13:20Z\nExpiration Time: 2023-11-14T22:14:20Z"
            )
        );
        let text = settings("Hi").render(&meta, address, NONCE);
        assert!(
            text.contains(&format!("{address}\n\nHi\n\nURI: ")),
            "{text}"
        );
    }

    #[test]
    fn pico_layouts_name_the_key_and_have_no_chain_id() {
        let s = settings("");
        for (layout, header) in [
            (Layout::Wallet, "wallet key"),
            (Layout::Key(Algorithm::MlDsa65), "ML-DSA-65 key"),
            (Layout::Key(Algorithm::Ed25519), "Ed25519 key"),
            (Layout::Key(Algorithm::Secp256k1), "secp256k1 key"),
        ] {
            let meta = ChallengeMeta::new(layout, 0, 60, 0);
            let text = s.render(&meta, "abcd", NONCE);
            assert!(
                text.starts_with(&format!(
                    "localhost:8100 wants you to sign in with your {header}:\nabcd\n\n\nURI: "
                )),
                "{text}"
            );
            assert!(!text.contains("Chain ID"), "{text}");
            assert_eq!(Layout::from_tag(layout.tag()), Some(layout));
        }
        assert_eq!(Layout::from_tag(0), None);
        assert_eq!(Layout::from_tag(7), None);
    }

    #[test]
    fn any_other_byte_does_not_match() {
        let s = settings("");
        let meta = ChallengeMeta::new(Layout::Ethereum, 1_700_000_000, 60, 1);
        let address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let text = s.render(&meta, address, NONCE);
        assert!(s.matches(&text, &meta, address, NONCE));
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] ^= 0x01;
            if let Ok(changed) = String::from_utf8(bytes) {
                assert!(!s.matches(&changed, &meta, address, NONCE), "byte {i}");
            }
        }
        assert!(!s.matches(&text[..text.len() - 1], &meta, address, NONCE));
        assert!(!s.matches(&format!("{text}\n"), &meta, address, NONCE));
        assert!(!s.matches("", &meta, address, NONCE));
        // A bare challenge has no message at all.
        assert!(!s.matches(&text, &ChallengeMeta::default(), address, NONCE));
    }

    #[test]
    fn settings_default_from_the_issuer_and_refuse_what_eip4361_refuses() {
        let s = MessageSettings::from_config(&AuthConfig {
            issuer: "https://user@auth.example.com:8443/base?x".into(),
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(s.domain, "auth.example.com:8443");
        assert_eq!(s.uri, "https://user@auth.example.com:8443/base?x");
        type Change = fn(&mut AuthConfig);
        let refused: &[(Change, &str)] = &[
            (|c| c.statement = "two\nlines".into(), "statement"),
            (|c| c.statement = "say \"hi\"".into(), "statement"),
            (|c| c.statement = "caf\u{e9}".into(), "statement"),
            (|c| c.domain = "evil.com\nURI: x".into(), "domain"),
            (|c| c.domain = "a b".into(), "domain"),
            (|c| c.uri = "no scheme".into(), "uri"),
            (|c| c.uri = "https://x/\n".into(), "uri"),
            (|c| c.issuer = "not-a-url".into(), "domain"),
        ];
        for (change, field) in refused {
            let mut config = AuthConfig::default();
            change(&mut config);
            match MessageSettings::from_config(&config) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, *field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let ok = AuthConfig {
            statement: "Sign in to Example: read & write, 30 days (no fees)!".into(),
            domain: "[::1]:8100".into(),
            uri: "urn:example:app".into(),
            ..AuthConfig::default()
        };
        MessageSettings::from_config(&ok).unwrap();
    }
}
