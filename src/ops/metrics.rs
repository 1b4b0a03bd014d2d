//! The metrics of SPEC 11, in one [`Metrics`] registry per [`WalletAuth`]
//! (made when metrics are on: `metrics_listen` set, or
//! [`WalletAuthBuilder::with_metrics`]).
//!
//! Cheap on the hot paths: every label set a request can produce is
//! resolved once, when the registry or the router is built, into a handle
//! that is a plain atomic (a `Counter` is an `Arc<AtomicU64>`; latencies go
//! to an [`AtomicHistogram`]); no request allocates a label, looks up a map
//! or takes a lock. The registry is only read (at a scrape) after it is
//! built. With metrics off nothing is counted and the router carries no
//! metrics layer.
//!
//! Labels are fixed vocabularies (route templates, status codes, algorithm
//! names, outcomes): never a wallet id, a jti or a token.
//!
//! [`WalletAuth`]: crate::WalletAuth
//! [`WalletAuthBuilder::with_metrics`]: crate::WalletAuthBuilder::with_metrics

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::histogram::{AtomicHistogram, LATENCY_BUCKETS};
use crate::jsonl::FsyncStats;
use crate::wallet::Algorithm;
use crate::Error;

/// The `Content-Type` of [`Metrics::encode`]'s output (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric name this crate exports, as scraped (counters with their
/// `_total`).
pub const METRIC_NAMES: &[&str] = &[
    "wallet_auth_challenges_issued_total",
    "wallet_auth_sign_ins_total",
    "wallet_auth_refreshes_total",
    "wallet_auth_revocations_total",
    "wallet_auth_denylist_entries",
    "wallet_auth_http_requests_total",
    "wallet_auth_http_request_duration_seconds",
    "wallet_auth_fsync_batch_size",
    "wallet_auth_fsync_duration_seconds",
    "wallet_auth_cpu_queue_depth",
    "wallet_auth_shed_total",
    "wallet_auth_audit_failures_total",
    "wallet_auth_signing_keys",
];

/// How a sign-in ended (`wallet_auth_sign_ins_total{result}`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SignInResult {
    Success,
    InvalidChallenge,
    BadSignature,
    Rejected,
    Shed,
    Error,
}

const SIGN_IN_RESULTS: [&str; 6] = [
    "success",
    "invalid_challenge",
    "bad_signature",
    "rejected",
    "shed",
    "error",
];

impl SignInResult {
    pub(crate) fn of<T>(outcome: &Result<T, Error>) -> Self {
        match outcome {
            Ok(_) => Self::Success,
            Err(Error::InvalidChallenge) => Self::InvalidChallenge,
            Err(
                Error::SignatureFailed(_)
                | Error::MessageMismatch
                | Error::ContractWalletUnsupported
                | Error::AddressMismatch,
            ) => Self::BadSignature,
            Err(e) if is_shed(e) => Self::Shed,
            Err(e) if e.status().is_client_error() => Self::Rejected,
            Err(_) => Self::Error,
        }
    }
}

/// How a refresh ended (`wallet_auth_refreshes_total{result}`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RefreshResult {
    Success,
    /// A spent refresh token presented again: its family was revoked.
    Reuse,
    Expired,
    Invalid,
    Shed,
    Error,
}

const REFRESH_RESULTS: [&str; 6] = ["success", "reuse", "expired", "invalid", "shed", "error"];

impl RefreshResult {
    pub(crate) fn of<T>(outcome: &Result<T, Error>) -> Self {
        match outcome {
            Ok(_) => Self::Success,
            Err(Error::RefreshInvalid(why)) if why == crate::auth::REUSE_DETECTED => Self::Reuse,
            Err(Error::RefreshExpired) => Self::Expired,
            Err(e) if is_shed(e) => Self::Shed,
            Err(e) if e.status().is_client_error() => Self::Invalid,
            Err(_) => Self::Error,
        }
    }
}

fn is_shed(e: &Error) -> bool {
    ShedReason::of(e).is_some()
}

/// Why a request was refused to protect the service
/// (`wallet_auth_shed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShedReason {
    /// The per-IP or per-family rate limit (429).
    RateLimit,
    /// The admin login's failure lockout (429).
    LoginLockout,
    /// `challenge_max_outstanding` reached (503).
    ChallengesFull,
    /// The CPU pool's queue is full (503).
    CpuQueue,
}

const SHED_REASONS: [&str; 4] = [
    "rate_limit",
    "login_lockout",
    "challenges_full",
    "cpu_queue",
];

impl ShedReason {
    /// The reason `e` sheds a request, if it does.
    pub fn of(e: &Error) -> Option<Self> {
        match e {
            Error::TooManyRequests { .. } => Some(Self::RateLimit),
            Error::TooManyAttempts { .. } => Some(Self::LoginLockout),
            Error::ChallengesFull { .. } => Some(Self::ChallengesFull),
            Error::Overloaded => Some(Self::CpuQueue),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::RateLimit => 0,
            Self::LoginLockout => 1,
            Self::ChallengesFull => 2,
            Self::CpuQueue => 3,
        }
    }
}

/// The label of an algorithm that is not one of [`Algorithm::ALL`].
const UNKNOWN_ALGORITHM: &str = "unknown";

/// Statuses whose `http_requests_total` series are resolved up front;
/// another status takes the family's (rare, read-locked) lookup.
const STATUSES: [u16; 14] = [
    200, 304, 400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 503, 504,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    algorithm: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: &'static str,
}

type HistogramFamily<S> = Family<S, AtomicHistogram, fn() -> AtomicHistogram>;

fn latency_histogram() -> AtomicHistogram {
    AtomicHistogram::new(LATENCY_BUCKETS)
}

/// What the scrape reads from the service itself (counts kept whether or
/// not metrics are on).
pub(crate) struct Sources {
    pub(crate) audit_failures: Arc<AtomicU64>,
    pub(crate) cpu_queue_depth: Arc<AtomicUsize>,
    /// The JSON Lines writers' fsync statistics, by store.
    pub(crate) fsync: Vec<(&'static str, Arc<FsyncStats>)>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field(
                "fsync",
                &self.fsync.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let failures = ConstCounter::new(self.audit_failures.load(Ordering::Relaxed));
        failures.encode(encoder.encode_descriptor(
            "wallet_auth_audit_failures",
            "Mint-audit writes that failed (the mint was answered unless mint_audit_fail_closed)",
            None,
            failures.metric_type(),
        )?)?;
        let depth = ConstGauge::new(
            i64::try_from(self.cpu_queue_depth.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        depth.encode(encoder.encode_descriptor(
            "wallet_auth_cpu_queue_depth",
            "Jobs (signing, verification, gzip) waiting for the CPU pool",
            None,
            depth.metric_type(),
        )?)?;
        for (name, help, pick) in [
            (
                "wallet_auth_fsync_batch_size",
                "Appends made durable by one fsync of a JSON Lines writer (group commit)",
                FsyncStats::batch_size as fn(&FsyncStats) -> &AtomicHistogram,
            ),
            (
                "wallet_auth_fsync_duration_seconds",
                "Time one write + fsync of a JSON Lines batch took",
                FsyncStats::duration,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (store, stats) in &self.fsync {
                let label = StoreLabel { store };
                pick(stats).encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

/// The latency histogram and request counters of one route, resolved once
/// when the router is built.
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    route: &'static str,
    statuses: Arc<[Counter; STATUSES.len()]>,
    requests: Family<HttpLabels, Counter>,
    duration: AtomicHistogram,
    shed: Arc<[Counter; SHED_REASONS.len()]>,
}

impl RouteMetrics {
    /// Counts one answered request.
    pub(crate) fn record(&self, status: u16, seconds: f64, shed: Option<ShedReason>) {
        match STATUSES.iter().position(|s| *s == status) {
            Some(i) => {
                self.statuses[i].inc();
            }
            None => {
                self.requests
                    .get_or_create(&HttpLabels {
                        route: self.route,
                        status,
                    })
                    .inc();
            }
        }
        self.duration.observe(seconds);
        if let Some(reason) = shed {
            self.shed[reason.index()].inc();
        }
    }
}

/// The registry and the pre-resolved handles of every metric.
pub struct Metrics {
    registry: Registry,
    challenges: Counter,
    sign_ins: Box<[[Counter; SIGN_IN_RESULTS.len()]]>,
    refreshes: [Counter; REFRESH_RESULTS.len()],
    revocations: Counter,
    denylist: Gauge,
    requests: Family<HttpLabels, Counter>,
    durations: HistogramFamily<RouteLabel>,
    shed: Arc<[Counter; SHED_REASONS.len()]>,
    signing_keys: Family<StateLabel, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(sources: Sources) -> Self {
        let mut registry = Registry::default();
        let challenges = Counter::default();
        registry.register(
            "wallet_auth_challenges_issued",
            "Challenges issued by POST /challenge",
            challenges.clone(),
        );
        let sign_in_family = Family::<SignInLabels, Counter>::default();
        let labels = Algorithm::ALL
            .iter()
            .map(|a| a.as_str())
            .chain([UNKNOWN_ALGORITHM]);
        let sign_ins = labels
            .map(|algorithm| {
                SIGN_IN_RESULTS.map(|result| {
                    sign_in_family.get_or_create_owned(&SignInLabels { algorithm, result })
                })
            })
            .collect();
        registry.register(
            "wallet_auth_sign_ins",
            "Wallet sign-ins by wallet algorithm and outcome",
            sign_in_family,
        );
        let refresh_family = Family::<ResultLabel, Counter>::default();
        let refreshes = REFRESH_RESULTS
            .map(|result| refresh_family.get_or_create_owned(&ResultLabel { result }));
        registry.register(
            "wallet_auth_refreshes",
            "Refresh-token exchanges by outcome (reuse: a spent token presented again; its family is revoked)",
            refresh_family,
        );
        let revocations = Counter::default();
        registry.register(
            "wallet_auth_revocations",
            "Operator revocations accepted by POST /revoke",
            revocations.clone(),
        );
        let denylist = Gauge::default();
        registry.register(
            "wallet_auth_denylist_entries",
            "Entries in the denylist (operator revocations and refresh bookkeeping), read at scrape",
            denylist.clone(),
        );
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "wallet_auth_http_requests",
            "HTTP requests answered, by route template and status",
            requests.clone(),
        );
        let durations: HistogramFamily<RouteLabel> =
            Family::new_with_constructor(latency_histogram as fn() -> AtomicHistogram);
        registry.register(
            "wallet_auth_http_request_duration_seconds",
            "Time to answer an HTTP request (to its response head), by route template",
            durations.clone(),
        );
        let shed_family = Family::<ReasonLabel, Counter>::default();
        let shed = Arc::new(
            SHED_REASONS.map(|reason| shed_family.get_or_create_owned(&ReasonLabel { reason })),
        );
        registry.register(
            "wallet_auth_shed",
            "Requests refused to protect the service, by reason",
            shed_family,
        );
        let signing_keys = Family::<StateLabel, Gauge>::default();
        registry.register(
            "wallet_auth_signing_keys",
            "Signing keys in the key set by state (next, current, retired), read at scrape",
            signing_keys.clone(),
        );
        registry.register_collector(Box::new(sources));
        Self {
            registry,
            challenges,
            sign_ins,
            refreshes,
            revocations,
            denylist,
            requests,
            durations,
            shed,
            signing_keys,
        }
    }

    /// The handles of one route (label: its template, e.g. `/sign-in`).
    pub(crate) fn route(&self, route: &'static str) -> RouteMetrics {
        let statuses = Arc::new(STATUSES.map(|status| {
            self.requests
                .get_or_create_owned(&HttpLabels { route, status })
        }));
        RouteMetrics {
            route,
            statuses,
            requests: self.requests.clone(),
            duration: self.durations.get_or_create_owned(&RouteLabel { route }),
            shed: Arc::clone(&self.shed),
        }
    }

    pub(crate) fn challenge_issued(&self) {
        self.challenges.inc();
    }

    /// Counts a sign-in; `algorithm` is the request's (absent: ML-DSA-65).
    pub(crate) fn sign_in(&self, algorithm: Option<Algorithm>, result: SignInResult) {
        let row = algorithm
            .and_then(|a| Algorithm::ALL.iter().position(|x| *x == a))
            .unwrap_or(Algorithm::ALL.len());
        if let Some(row) = self.sign_ins.get(row) {
            row[result as usize].inc();
        }
    }

    pub(crate) fn refresh(&self, result: RefreshResult) {
        self.refreshes[result as usize].inc();
    }

    pub(crate) fn revoked(&self) {
        self.revocations.inc();
    }

    /// Sets what is read at scrape time: the denylist's size and the key
    /// set's states.
    pub(crate) fn set_scraped(&self, denylist_entries: usize, keys: &[(&'static str, usize)]) {
        self.denylist
            .set(i64::try_from(denylist_entries).unwrap_or(i64::MAX));
        for (state, n) in keys {
            self.signing_keys
                .get_or_create(&StateLabel { state })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Every metric in the Prometheus text format (version 0.0.4; see
    /// [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail; an encoder error would be a bug
        // of ours, answered with what was written so far.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }
}
