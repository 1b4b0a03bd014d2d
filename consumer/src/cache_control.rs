//! The one thing the consumer reads from `Cache-Control`: for how long a
//! JWKS answer may be reused.

use std::time::Duration;

/// How long a response may be reused according to its `Cache-Control`
/// values: `Some(0)` for `no-store` / `no-cache`, `Some(max-age)` when one
/// is given, `None` when the header says nothing about freshness (the
/// caller's default applies). Malformed directives are ignored; the first
/// well-formed `max-age` wins, `no-store` and `no-cache` win over it.
///
/// ```
/// use std::time::Duration;
/// use wallet_auth_consumer::cache_control::freshness;
/// assert_eq!(freshness(["public, max-age=300"]), Some(Duration::from_secs(300)));
/// assert_eq!(freshness(["no-store"]), Some(Duration::ZERO));
/// assert_eq!(freshness(["public"]), None);
/// ```
pub fn freshness<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Duration> {
    let mut max_age = None;
    for value in values {
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
                // Delta-seconds (RFC 9111 1.2.2): digits only; a value too
                // large for u64 is "a very long time", capped by the caller.
                if let Some(arg) =
                    arg.filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
                {
                    let secs = arg.parse::<u64>().unwrap_or(u64::MAX);
                    max_age = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn directives() {
        assert_eq!(freshness(["max-age=0"]), Some(Duration::ZERO));
        assert_eq!(freshness(["Max-Age=\"60\""]), Some(Duration::from_secs(60)));
        assert_eq!(
            freshness(["public", "max-age=7"]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(freshness(["max-age=5, no-cache"]), Some(Duration::ZERO));
        assert_eq!(freshness(["max-age=-1"]), None);
        assert_eq!(
            freshness(["max-age=abc, max-age=9"]),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            freshness(["max-age=99999999999999999999999"]),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(freshness([]), None);
        assert_eq!(freshness([""]), None);
    }

    proptest! {
        #[test]
        fn any_header_value_is_parsed_without_panic(s in ".{0,200}") {
            let _ = freshness([s.as_str()]);
        }

        #[test]
        fn a_max_age_among_noise_is_found(n in 0u64..1_000_000, pre in "[a-z ]{0,20}") {
            let v = format!("{pre}, max-age={n}");
            prop_assert_eq!(freshness([v.as_str()]), Some(Duration::from_secs(n)));
        }
    }
}
