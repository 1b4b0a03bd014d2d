//! The standalone wallet-auth server.
//!
//! ```text
//! cargo run --example standalone -- [--config FILE] [--listen ADDR] [--data-dir DIR]
//! ```
//!
//! With no configuration at all it listens on `127.0.0.1:8100`, keeps its
//! state in `./data/` (signing key, revocations, mint audit) and creates what
//! is missing on first start. Configuration comes from an optional YAML file
//! with pico-server-auth's `server_auth:` tree, overridden by
//! `SERVER_AUTH_<NAME>` environment variables (lists: comma-separated or a
//! JSON array; booleans: true/false, 1/0, yes/no, on/off). A value that does
//! not parse stops start-up naming it; an unknown `SERVER_AUTH_*` variable is
//! named in a warning. SIGTERM or Ctrl-C shuts it down cleanly. A client gets 10 s
//! to send a request's headers and 30 s for its body.
//!
//! With `redis_url` (or `SERVER_AUTH_REDIS_URL`) set, challenges, the
//! denylist and the mint audit live in Redis, shared by every instance (build
//! with `--features redis`); without it, memory and files.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use wallet_auth::token::SigningAlgorithm;
use wallet_auth::{AuthConfig, SigningKey, WalletAuth};

/// Where the standalone serves `/metrics` unless `metrics_listen` is set
/// (SPEC 5, 11): loopback only, so metrics are never public by accident.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

const USAGE: &str = "usage: standalone [--config FILE] [--listen ADDR] [--data-dir DIR]";

struct Args {
    config: Option<PathBuf>,
    listen: String,
    data_dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        listen: "127.0.0.1:8100".into(),
        data_dir: PathBuf::from("data"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--config" => args.config = Some(PathBuf::from(value("--config")?)),
            "--listen" => args.listen = value("--listen")?,
            "--data-dir" => args.data_dir = PathBuf::from(value("--data-dir")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// How a configuration value is read from the environment (and checked in
/// the YAML file).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Any text.
    Text,
    /// Text that may be absent (`Option<String>`).
    OptionalText,
    /// true/false/1/0/yes/no/on/off, any case.
    Bool,
    /// A non-negative integer.
    Count,
    /// A comma-separated list, or a JSON array of strings.
    List,
    /// A comma-separated list, or a JSON array, of non-negative integers.
    CountList,
}

/// Every `AuthConfig` field and its type: the one table the environment
/// loader reads. A field missing here fails the `table_covers_every_field`
/// test below.
const FIELDS: &[(&str, Kind)] = &[
    ("issuer", Kind::Text),
    ("audience", Kind::Text),
    ("algorithm", Kind::Text),
    ("access_token_expire_minutes", Kind::Count),
    ("refresh_token_expire_days", Kind::Count),
    ("challenge_ttl_seconds", Kind::Count),
    ("auto_create_admin", Kind::Bool),
    ("admin_email", Kind::Text),
    ("admin_password", Kind::OptionalText),
    ("admin_role", Kind::Text),
    ("supported_wallet_algorithms", Kind::List),
    ("fleet_mint_secret", Kind::Text),
    ("fleet_session_ttl_seconds", Kind::Count),
    ("fleet_max_ttl_seconds", Kind::Count),
    ("fleet_allowed_roles", Kind::List),
    ("revocation_store_path", Kind::Text),
    ("mint_audit_path", Kind::Text),
    ("mint_audit_min_ttl_seconds", Kind::Count),
    ("mint_audit_max_in_memory", Kind::Count),
    ("mint_audit_fail_closed", Kind::Bool),
    ("signing_key_path", Kind::OptionalText),
    ("challenge_max_outstanding", Kind::Count),
    ("route_prefix", Kind::Text),
    ("redis_url", Kind::Text),
    ("redis_tls_ca_file", Kind::Text),
    ("redis_tls_cert_file", Kind::Text),
    ("redis_tls_key_file", Kind::Text),
    ("rate_limit_per_ip_per_minute", Kind::Count),
    ("refresh_per_family_per_minute", Kind::Count),
    ("trusted_proxies", Kind::List),
    ("session_max_days", Kind::Count),
    ("allow_memory_revocations", Kind::Bool),
    ("domain", Kind::Text),
    ("uri", Kind::Text),
    ("statement", Kind::Text),
    ("chain_ids", Kind::CountList),
    ("require_signed_message", Kind::Bool),
    ("audiences", Kind::List),
    ("revocation_stream_max", Kind::Count),
    ("metrics_listen", Kind::Text),
];

const ENV_PREFIX: &str = "SERVER_AUTH_";

fn kind_of(name: &str) -> Option<Kind> {
    FIELDS.iter().find(|(n, _)| *n == name).map(|&(_, k)| k)
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The value of the setting `what` (a variable or a YAML key) of `kind`,
/// given as text.
fn from_text(what: &str, kind: Kind, raw: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::Text | Kind::OptionalText => Value::String(raw.to_string()),
        Kind::Bool => Value::Bool(parse_bool(raw).ok_or_else(|| {
            format!("{what}: {raw:?} is not a boolean (true/false, 1/0, yes/no, on/off)")
        })?),
        Kind::Count => Value::Number(
            raw.trim()
                .parse::<u64>()
                .map_err(|_| format!("{what}: {raw:?} is not a non-negative integer"))?
                .into(),
        ),
        Kind::List if raw.trim_start().starts_with('[') => {
            let list: Vec<String> = serde_json::from_str(raw)
                .map_err(|e| format!("{what}: not a JSON array of strings: {e}"))?;
            Value::Array(list.into_iter().map(Value::String).collect())
        }
        Kind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        Kind::CountList => {
            let items = raw
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<u64>()
                        .map(Value::from)
                        .map_err(|_| format!("{what}: {s:?} is not a non-negative integer"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(items)
        }
    })
}

/// Checks a value from the YAML file against its field's type; text is
/// read as from the environment (so `"yes"` or `"300"` are accepted where
/// a boolean or a number is expected). `None` for a null: the default.
fn from_yaml(what: &str, kind: Kind, value: Value) -> Result<Option<Value>, String> {
    let wrong = |expected: &str| Err(format!("{what} must be {expected}"));
    match (kind, value) {
        (_, Value::Null) => Ok(None),
        (_, Value::String(s)) => from_text(what, kind, &s).map(Some),
        (Kind::Bool, v @ Value::Bool(_)) => Ok(Some(v)),
        (Kind::Bool, _) => wrong("a boolean"),
        (Kind::Count, Value::Number(n)) if n.as_u64().is_some() => Ok(Some(Value::Number(n))),
        (Kind::Count, _) => wrong("a non-negative integer"),
        (Kind::List, Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Some(Value::Array(items)))
        }
        (Kind::List, _) => wrong("a list of strings"),
        (Kind::CountList, Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::Number(n) if n.as_u64().is_some() => Ok(Value::Number(n)),
                Value::String(s) => s
                    .trim()
                    .parse::<u64>()
                    .map(Value::from)
                    .map_err(|_| format!("{what}: {s:?} is not a non-negative integer")),
                _ => Err(format!("{what} must be a list of non-negative integers")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| Some(Value::Array(items))),
        (Kind::CountList, _) => wrong("a list of non-negative integers"),
        (Kind::Text | Kind::OptionalText, _) => wrong("a string"),
    }
}

/// The settings of the YAML file's `server_auth:` tree (or a bare mapping)
/// overridden by the `SERVER_AUTH_<NAME>` variables of `env`, each checked
/// against its field's type in [`FIELDS`]. Unknown keys and variables are
/// warned about, naming them.
fn load_settings(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Map<String, Value>, String> {
    let mut merged: Map<String, Value> = Map::new();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let yaml: Value = serde_yaml::from_str(&text)
            .map_err(|e| format!("{}: invalid YAML: {e}", path.display()))?;
        let tree = match yaml.get("server_auth") {
            Some(t) => t.clone(),
            None => yaml,
        };
        let tree = match tree {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => return Err(format!("{}: server_auth must be a mapping", path.display())),
        };
        for (key, value) in tree {
            let Some(kind) = kind_of(&key) else {
                tracing::warn!(key, file = %path.display(), "unknown configuration key ignored");
                continue;
            };
            let what = format!("{}: server_auth.{key}", path.display());
            if let Some(value) = from_yaml(&what, kind, value)? {
                merged.insert(key, value);
            }
        }
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| format!("{name}: the value is not valid UTF-8"))?;
        vars.push((name.to_string(), value));
    }
    // Sorted, so warnings and errors come in a stable order.
    vars.sort();
    for (var, raw) in vars {
        let field = var[ENV_PREFIX.len()..].to_ascii_lowercase();
        let Some(kind) = kind_of(&field) else {
            tracing::warn!("unknown environment variable {var} ignored: no such setting");
            continue;
        };
        merged.insert(field, from_text(&var, kind, &raw)?);
    }
    Ok(merged)
}

/// The configuration the settings describe. Built by deserializing, so every
/// field (the secret ones included) is read the way `AuthConfig` reads it.
fn to_config(settings: &Map<String, Value>) -> Result<AuthConfig, String> {
    serde_json::from_value(Value::Object(settings.clone()))
        .map_err(|e| format!("invalid configuration: {e}"))
}

/// A text setting as given, or "" when it is not set.
fn text<'a>(settings: &'a Map<String, Value>, name: &str) -> &'a str {
    settings.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Writes `contents` to a new file readable by the owner only, and makes it
/// and its directory entry durable.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn load_or_create_key(path: &Path, algorithm: SigningAlgorithm) -> Result<SigningKey, String> {
    if path.exists() {
        let key = SigningKey::load(path).map_err(|e| e.to_string())?;
        tracing::info!(path = %path.display(), kid = key.kid(), algorithm = %key.algorithm(), "loaded signing key");
        return Ok(key);
    }
    // An RSA key, or (`algorithm: ML-DSA-65`) an ML-DSA-65 key, as PKCS#8.
    let key = SigningKey::generate_for(algorithm).map_err(|e| e.to_string())?;
    let pem = key.to_pkcs8_pem().map_err(|e| e.to_string())?;
    write_private(path, pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), kid = key.kid(), "created a new signing key (mode 0600)");
    Ok(key)
}

/// Fills in what the standalone server keeps in its data directory (the
/// signing key, the two JSONL files, the admin password hash) where the
/// settings leave it unset, and loads or creates the key.
fn prepare(args: &Args, settings: &mut Map<String, Value>) -> Result<SigningKey, String> {
    let config = to_config(settings)?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let in_data = |name: &str| Value::String(args.data_dir.join(name).to_string_lossy().into());
    if !text(settings, "redis_url").is_empty() {
        // Redis holds the denylist and the audit; the files are not used.
        if !config.revocation_store_path.is_empty() || !config.mint_audit_path.is_empty() {
            tracing::warn!(
                "redis_url is set: revocation_store_path and mint_audit_path are ignored"
            );
        }
    } else {
        if config.revocation_store_path.is_empty() {
            settings.insert("revocation_store_path".into(), in_data("revocations.jsonl"));
        }
        if config.mint_audit_path.is_empty() {
            settings.insert("mint_audit_path".into(), in_data("mints.jsonl"));
        }
    }
    let algorithm = config.signing_algorithm().map_err(|e| e.to_string())?;
    let key_path = match &config.signing_key_path {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        // Each algorithm its own default file: switching never reads the
        // other kind of key.
        _ if algorithm == SigningAlgorithm::MlDsa65 => {
            args.data_dir.join("signing-key-ml-dsa-65.pem")
        }
        _ => args.data_dir.join("signing-key.pem"),
    };
    let key = load_or_create_key(&key_path, algorithm)?;
    settings.insert(
        "signing_key_path".into(),
        Value::String(key_path.to_string_lossy().into()),
    );
    if config.auto_create_admin && text(settings, "admin_password").is_empty() {
        let hash = admin_password_hash(args, &config.admin_email)?;
        settings.insert("admin_password".into(), Value::String(hash));
    }
    Ok(key)
}

/// With `auto_create_admin` on and no password configured, a password is
/// generated on first start, printed once, and only its argon2id hash kept;
/// later starts read the hash back.
fn admin_password_hash(args: &Args, email: &str) -> Result<String, String> {
    let path = args.data_dir.join("admin-password.argon2");
    if path.exists() {
        let hash = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "loaded the admin password hash");
        return Ok(hash.trim().to_string());
    }
    let password = wallet_auth::password::generate_password();
    let hash = wallet_auth::password::hash_password(&password).map_err(|e| e.to_string())?;
    write_private(&path, hash.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!(
        "\n  Generated the bootstrap admin password (shown once; only its hash is kept in {}):\n\n    email:    {email}\n    password: {password}\n",
        path.display(),
    );
    Ok(hash)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// Opens the three Redis stores and warns when Redis's persistence is weaker
/// than `appendonly yes` + `appendfsync always`.
#[cfg(feature = "redis")]
async fn with_redis(
    builder: wallet_auth::WalletAuthBuilder,
    redis_url: &str,
    config: &AuthConfig,
) -> Result<wallet_auth::WalletAuthBuilder, String> {
    use std::sync::Arc;
    use wallet_auth::{RedisOptions, RedisStores};

    let tls = wallet_auth::store_redis::RedisTls::from_config(config).map_err(|e| e.to_string())?;
    let stores = RedisStores::connect_tls(redis_url, &tls, RedisOptions::default())
        .await
        .map_err(|e| format!("redis_url: {e}"))?;
    match stores.persistence().await {
        Ok(p) if p.survives_crash() => {
            tracing::info!("redis: appendonly yes, appendfsync always");
        }
        Ok(p) => tracing::warn!(
            appendonly = p.appendonly,
            appendfsync = %p.appendfsync,
            "redis persistence is weaker than `appendonly yes` + `appendfsync always`: \
             acknowledged revocations can be lost if Redis crashes (see README, Many instances)"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot read redis persistence settings (CONFIG GET); make sure AOF with \
             appendfsync always is on"
        ),
    }
    let revocations = stores
        .revocations()
        .await
        .map_err(|e| format!("redis_url: loading the denylist: {e}"))?;
    tracing::info!(
        prefix = %stores.options().key_prefix,
        revoked = revocations.len(),
        "stores on redis"
    );
    Ok(builder
        .with_challenge_store(Arc::new(stores.challenges()))
        .with_revocation_store(Arc::new(revocations))
        .with_mint_audit_store(Arc::new(stores.mint_audit(config.mint_audit_max_in_memory))))
}

#[cfg(not(feature = "redis"))]
async fn with_redis(
    _builder: wallet_auth::WalletAuthBuilder,
    _redis_url: &str,
    _config: &AuthConfig,
) -> Result<wallet_auth::WalletAuthBuilder, String> {
    Err("redis_url is set, but this build has no Redis support: \
         rebuild with `--features redis`"
        .into())
}

fn fail(msg: String) -> ! {
    tracing::error!("{msg}");
    eprintln!("wallet-auth: {msg}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args().unwrap_or_else(|e| fail(e));
    let mut settings =
        load_settings(args.config.as_deref(), std::env::vars_os()).unwrap_or_else(|e| fail(e));
    // SPEC 11: metrics on loopback unless `metrics_listen` says otherwise
    // (SERVER_AUTH_METRICS_LISTEN; an empty value turns them off).
    settings
        .entry("metrics_listen")
        .or_insert_with(|| Value::String(DEFAULT_METRICS_LISTEN.into()));
    let key = prepare(&args, &mut settings).unwrap_or_else(|e| fail(e));
    let config = to_config(&settings).unwrap_or_else(|e| fail(e));
    let redis_url = text(&settings, "redis_url").to_string();
    tracing::info!(
        issuer = %config.issuer,
        redis = !redis_url.is_empty(),
        revocations = %config.revocation_store_path,
        mint_audit = %config.mint_audit_path,
        "configuration loaded"
    );
    let mut builder = WalletAuth::builder(config.clone()).with_signing_key(key);
    if !redis_url.is_empty() {
        builder = with_redis(builder, &redis_url, &config)
            .await
            .unwrap_or_else(|e| fail(e));
    }
    let auth = builder.build().unwrap_or_else(|e| fail(e.to_string()));
    // Health and discovery at the root, the API (and openapi.json) under
    // the prefix; each request runs in a request-id span of the library.
    let app = auth.router().merge(auth.ops_router());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {}: {e}", args.listen)));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| fail(e.to_string()));
    let metrics_listen = auth.config().metrics_listen.clone();
    if !metrics_listen.is_empty() {
        let metrics = tokio::net::TcpListener::bind(&metrics_listen)
            .await
            .unwrap_or_else(|e| {
                fail(format!(
                    "metrics_listen: cannot listen on {metrics_listen}: {e}"
                ))
            });
        let metrics_addr = metrics.local_addr().unwrap_or_else(|e| fail(e.to_string()));
        tracing::info!(addr = %metrics_addr, "metrics listening");
        // Printed before the "listening" line, which tells a supervisor
        // (and the tests) that the server is up.
        println!("wallet-auth metrics on http://{metrics_addr}/metrics");
        let auth = auth.clone();
        tokio::spawn(async move {
            if let Err(e) =
                wallet_auth::http::serve_metrics(metrics, &auth, shutdown_signal()).await
            {
                tracing::error!(error = %e, "metrics server error");
            }
        });
    }
    tracing::info!(%addr, prefix = %auth.config().route_prefix, "listening");
    println!("wallet-auth listening on http://{addr}");
    let _ = std::io::stdout().flush();
    // Not axum::serve: it has no deadline for a slow client's headers.
    let served = wallet_auth::http::serve(
        listener,
        app,
        wallet_auth::http::ServeOptions::default(),
        shutdown_signal(),
    )
    .await;
    if let Err(e) = served {
        fail(format!("server error: {e}"));
    }
    tracing::info!("stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn load(vars: &[(&str, &str)]) -> Result<AuthConfig, String> {
        to_config(&load_settings(None, env(vars))?)
    }

    #[test]
    fn table_covers_every_field() {
        let Value::Object(defaults) = serde_json::to_value(AuthConfig::default()).unwrap() else {
            panic!("AuthConfig does not serialize to a map");
        };
        let missing: Vec<&String> = defaults.keys().filter(|k| kind_of(k).is_none()).collect();
        assert!(
            missing.is_empty(),
            "fields without a type in FIELDS: {missing:?}"
        );
        for (i, (name, _)) in FIELDS.iter().enumerate() {
            assert!(
                !FIELDS[..i].iter().any(|(n, _)| n == name),
                "{name} is listed twice"
            );
        }
    }

    #[test]
    fn table_types_match_the_defaults() {
        let Value::Object(defaults) = serde_json::to_value(AuthConfig::default()).unwrap() else {
            panic!("AuthConfig does not serialize to a map");
        };
        for (name, kind) in FIELDS {
            let Some(default) = defaults.get(*name) else {
                continue; // a field that does not serialize (a secret) is checked below
            };
            let fits = match kind {
                Kind::Bool => default.is_boolean(),
                Kind::Count => default.is_u64(),
                Kind::List => default.is_array(),
                Kind::CountList => default
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_u64)),
                Kind::Text => default.is_string(),
                Kind::OptionalText => default.is_null() || default.is_string(),
            };
            // Secret types may serialize redacted; a string stays a string.
            assert!(
                fits || default.is_string(),
                "{name}: {kind:?} vs default {default}"
            );
        }
    }

    #[test]
    fn every_field_is_read_from_its_variable() {
        // One value per kind, different from every default.
        let sample = |kind: Kind| match kind {
            Kind::Text | Kind::OptionalText => "/x",
            Kind::Bool => "yes",
            Kind::Count => "7",
            Kind::List => "a, b",
            Kind::CountList => "7, 8",
        };
        let vars: Vec<(String, &str)> = FIELDS
            .iter()
            .map(|(name, kind)| {
                (
                    format!("SERVER_AUTH_{}", name.to_uppercase()),
                    sample(*kind),
                )
            })
            .collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let settings = load_settings(None, env(&vars)).unwrap();
        assert_eq!(settings.len(), FIELDS.len());
        let config = to_config(&settings).unwrap();
        assert!(config.auto_create_admin && config.mint_audit_fail_closed);
        assert_eq!(config.challenge_ttl_seconds, 7);
        assert_eq!(config.mint_audit_max_in_memory, 7);
        assert_eq!(config.fleet_allowed_roles, ["a", "b"]);
        assert_eq!(config.issuer, "/x");
        assert_eq!(config.signing_key_path.as_deref(), Some("/x"));
    }

    #[test]
    fn booleans_take_the_eight_spellings_in_any_case() {
        for (raw, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("Yes", true),
            ("on", true),
            ("false", false),
            ("False", false),
            ("0", false),
            ("NO", false),
            ("oFF", false),
            (" on ", true),
        ] {
            let config = load(&[("SERVER_AUTH_MINT_AUDIT_FAIL_CLOSED", raw)]).unwrap();
            assert_eq!(config.mint_audit_fail_closed, want, "{raw:?}");
        }
    }

    #[test]
    fn a_bad_boolean_is_an_error_naming_the_variable() {
        for raw in ["ture", "", "2", "enabled", "y"] {
            let err = load(&[("SERVER_AUTH_MINT_AUDIT_FAIL_CLOSED", raw)]).unwrap_err();
            assert!(
                err.contains("SERVER_AUTH_MINT_AUDIT_FAIL_CLOSED"),
                "{raw:?}: {err}"
            );
            assert!(err.contains("not a boolean"), "{err}");
        }
    }

    #[test]
    fn a_bad_number_is_an_error_naming_the_variable() {
        for raw in ["60s", "-1", "", "1e3", "18446744073709551616"] {
            let err = load(&[("SERVER_AUTH_CHALLENGE_TTL_SECONDS", raw)]).unwrap_err();
            assert!(
                err.contains("SERVER_AUTH_CHALLENGE_TTL_SECONDS"),
                "{raw:?}: {err}"
            );
        }
        assert_eq!(
            load(&[("SERVER_AUTH_CHALLENGE_TTL_SECONDS", " 30 ")])
                .unwrap()
                .challenge_ttl_seconds,
            30
        );
    }

    #[test]
    fn lists_are_comma_separated_or_json() {
        let config = load(&[("SERVER_AUTH_FLEET_ALLOWED_ROLES", "agent,, service ")]).unwrap();
        assert_eq!(config.fleet_allowed_roles, ["agent", "service"]);
        let config = load(&[("SERVER_AUTH_FLEET_ALLOWED_ROLES", r#"["a,b"]"#)]).unwrap();
        assert_eq!(config.fleet_allowed_roles, ["a,b"]);
        let err = load(&[("SERVER_AUTH_FLEET_ALLOWED_ROLES", "[1]")]).unwrap_err();
        assert!(err.contains("SERVER_AUTH_FLEET_ALLOWED_ROLES"), "{err}");
    }

    #[test]
    fn unknown_and_foreign_variables_are_not_settings() {
        let settings = load_settings(
            None,
            env(&[
                ("SERVER_AUTH_NO_SUCH_THING", "1"),
                ("PATH", "/bin"),
                ("SERVER_AUTH", "x"),
            ]),
        )
        .unwrap();
        assert!(settings.is_empty(), "{settings:?}");
    }

    #[test]
    fn secrets_and_text_are_taken_verbatim() {
        let vars = env(&[
            ("SERVER_AUTH_ADMIN_PASSWORD", " pass,word "),
            ("SERVER_AUTH_FLEET_MINT_SECRET", "true"),
        ]);
        let settings = load_settings(None, vars).unwrap();
        assert_eq!(text(&settings, "admin_password"), " pass,word ");
        assert_eq!(text(&settings, "fleet_mint_secret"), "true");
        // Whatever type holds a secret, it is deserialized from that string.
        to_config(&settings).unwrap();
    }

    #[test]
    fn yaml_values_are_checked_against_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let load_yaml = |yaml: &str| {
            std::fs::write(&path, yaml).unwrap();
            load_settings(Some(&path), env(&[])).and_then(|s| to_config(&s))
        };
        let config = load_yaml(
            "server_auth:\n  auto_create_admin: \"yes\"\n  challenge_ttl_seconds: \"30\"\n  \
             fleet_allowed_roles: agent\n  signing_key_path: null\n  mint_audit_fail_closed: true\n",
        )
        .unwrap();
        assert!(config.auto_create_admin && config.mint_audit_fail_closed);
        assert_eq!(config.challenge_ttl_seconds, 30);
        assert_eq!(config.fleet_allowed_roles, ["agent"]);
        for (yaml, names) in [
            (
                "server_auth:\n  mint_audit_fail_closed: ture\n",
                "mint_audit_fail_closed",
            ),
            (
                "server_auth:\n  challenge_ttl_seconds: -5\n",
                "challenge_ttl_seconds",
            ),
            (
                "server_auth:\n  challenge_ttl_seconds: 1.5\n",
                "challenge_ttl_seconds",
            ),
            ("server_auth:\n  issuer: [a]\n", "issuer"),
            (
                "server_auth:\n  fleet_allowed_roles: [1]\n",
                "fleet_allowed_roles",
            ),
        ] {
            let err = load_yaml(yaml).unwrap_err();
            assert!(err.contains(names), "{yaml}: {err}");
        }
        // The environment overrides the file.
        std::fs::write(&path, "server_auth:\n  audience: file\n").unwrap();
        let settings = load_settings(Some(&path), env(&[("SERVER_AUTH_AUDIENCE", "env")])).unwrap();
        assert_eq!(to_config(&settings).unwrap().audience, "env");
    }
}
