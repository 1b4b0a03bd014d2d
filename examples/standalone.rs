//! The standalone wallet-auth server.
//!
//! ```text
//! standalone [serve] [--config FILE] [--listen ADDR] [--data-dir DIR] [--metrics-listen ADDR]
//! standalone keys list   [--data-dir DIR] [--config FILE]
//! standalone keys rotate [--data-dir DIR] [--config FILE] [--algorithm RS256|ML-DSA-65]
//! ```
//!
//! With no configuration at all it listens on `127.0.0.1:8100`, keeps its
//! state in `./data/` (the signing key set in `keys/`, revocations, mint
//! audit) and creates what is missing on first start. An older data
//! directory's `signing-key.pem` (or `signing-key-ml-dsa-65.pem`) is
//! imported into a new key set as its current key, so its tokens keep
//! validating. `keys rotate` publishes a next key (printing its kid); every
//! server on the directory re-reads it within `key_reload_seconds` and signs
//! with it `key_prepublish_seconds` after it was made. Configuration comes from an optional YAML file
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

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};
use wallet_auth::clock::SystemClock;
use wallet_auth::keyset::{Initial, KeySetOptions};
use wallet_auth::token::SigningAlgorithm;
use wallet_auth::{AuthConfig, KeyInfo, KeySet, SigningKey, WalletAuth};

/// Where the standalone serves `/metrics` unless `metrics_listen` is set
/// (SPEC 5, 11): loopback only, so metrics are never public by accident.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// The wallet-auth standalone server and its key set tools.
#[derive(Parser, Debug)]
#[command(
    name = "standalone",
    about = "wallet-auth: wallet challenge-response login, RS256 / ML-DSA-65 tokens",
    long_about = "wallet-auth: wallet challenge-response login, RS256 / ML-DSA-65 tokens.\n\n\
        Without a subcommand it serves. Configuration: --config FILE (YAML, pico-server-auth's \
        server_auth: tree) overridden by SERVER_AUTH_<NAME> environment variables.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API (the default).
    Serve(ServeArgs),
    /// Inspect or rotate the signing key set.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// List the keys: kid, algorithm, state, created, signs from, retires after.
    List(KeysArgs),
    /// Publish a next key (printed: its kid); it signs key_prepublish_seconds from now.
    Rotate(RotateArgs),
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8100")]
    listen: String,
    /// Directory of the key set, the JSONL files and the admin password hash.
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Address of the Prometheus /metrics listener (sets `metrics_listen`).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

#[derive(Args, Debug, Clone)]
struct KeysArgs {
    /// Data directory (its keys/ holds the set, unless signing_keys_dir says otherwise).
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
    /// YAML configuration file (for signing_keys_dir, algorithm, key_* settings).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct RotateArgs {
    #[command(flatten)]
    keys: KeysArgs,
    /// Algorithm of the new key (default: the `algorithm` setting).
    #[arg(long, value_parser = ["RS256", "ML-DSA-65"])]
    algorithm: Option<String>,
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
    ("signing_keys_dir", Kind::Text),
    ("key_rotation_days", Kind::Count),
    ("key_prepublish_seconds", Kind::Count),
    ("key_reload_seconds", Kind::Count),
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

/// The signing keys the server uses: one file (`signing_key_path`, as
/// before key sets), or the key set.
enum Keys {
    Single(Box<SigningKey>),
    Set(Arc<KeySet>),
}

/// The key set's directory: `signing_keys_dir`, or `keys/` in the data
/// directory.
fn key_set_dir(data_dir: &Path, config: &AuthConfig) -> PathBuf {
    if config.signing_keys_dir.is_empty() {
        data_dir.join("keys")
    } else {
        PathBuf::from(&config.signing_keys_dir)
    }
}

/// Opens the key set of `data_dir` (creating it on first start), and
/// records its directory in `settings`. A new set imports an older data
/// directory's key files: the one of the configured algorithm as its
/// current key, the other (if any) as a retired key, so every token they
/// signed keeps validating.
fn open_key_set(data_dir: &Path, settings: &mut Map<String, Value>) -> Result<Arc<KeySet>, String> {
    let config = to_config(settings)?;
    let algorithm = config.signing_algorithm().map_err(|e| e.to_string())?;
    let dir = key_set_dir(data_dir, &config);
    settings.insert(
        "signing_keys_dir".into(),
        Value::String(dir.to_string_lossy().into()),
    );
    let mut initial = Initial::default();
    if !KeySet::exists(&dir) {
        for alg in SigningAlgorithm::ALL {
            let path = data_dir.join(legacy_key_file(alg));
            if !path.exists() {
                continue;
            }
            let key = SigningKey::load(&path).map_err(|e| e.to_string())?;
            tracing::info!(path = %path.display(), kid = key.kid(), "importing an older signing key into the new key set");
            if alg == algorithm {
                initial.current = Some(key);
            } else {
                initial.retired.push(key);
            }
        }
    }
    let opts = KeySetOptions::from_config(&config, &dir).map_err(|e| e.to_string())?;
    let set = KeySet::open(opts, Arc::new(SystemClock), initial)
        .map_err(|e| format!("signing key set: {e}"))?;
    Ok(Arc::new(set))
}

/// The single-key file of older data directories, per algorithm.
fn legacy_key_file(algorithm: SigningAlgorithm) -> &'static str {
    match algorithm {
        SigningAlgorithm::MlDsa65 => "signing-key-ml-dsa-65.pem",
        _ => "signing-key.pem",
    }
}

/// Fills in what the standalone server keeps in its data directory (the
/// key set, the two JSONL files, the admin password hash) where the
/// settings leave it unset, and loads or creates the keys.
fn prepare(args: &ServeArgs, settings: &mut Map<String, Value>) -> Result<Keys, String> {
    let config = to_config(settings)?;
    config.signing_algorithm().map_err(|e| e.to_string())?;
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
    let keys = match &config.signing_key_path {
        // One key, always current (SPEC 8: signing_key_path keeps working).
        Some(p) if !p.is_empty() => {
            let algorithm = config.signing_algorithm().map_err(|e| e.to_string())?;
            Keys::Single(Box::new(load_or_create_key(Path::new(p), algorithm)?))
        }
        _ => Keys::Set(open_key_set(&args.data_dir, settings)?),
    };
    if config.auto_create_admin && text(settings, "admin_password").is_empty() {
        let hash = admin_password_hash(args, &config.admin_email)?;
        settings.insert("admin_password".into(), Value::String(hash));
    }
    Ok(keys)
}

/// With `auto_create_admin` on and no password configured, a password is
/// generated on first start, printed once, and only its argon2id hash kept;
/// later starts read the hash back.
fn admin_password_hash(args: &ServeArgs, email: &str) -> Result<String, String> {
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

/// An epoch time as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `keys list`: one line per key.
fn print_keys(keys: &[KeyInfo]) {
    println!(
        "{:<44}  {:<9}  {:<7}  {:<20}  {:<20}  RETIRES AFTER",
        "KID", "ALGORITHM", "STATE", "CREATED", "SIGNS FROM"
    );
    for k in keys {
        println!(
            "{:<44}  {:<9}  {:<7}  {:<20}  {:<20}  {}",
            k.kid,
            k.algorithm.name(),
            k.state.name(),
            iso8601(k.created),
            iso8601(k.signs_from),
            k.retires_after.map_or_else(|| "-".to_string(), iso8601),
        );
    }
}

/// `keys list` and `keys rotate`.
fn keys_command(command: KeysCommand) -> Result<(), String> {
    let (args, algorithm) = match &command {
        KeysCommand::List(a) => (a, None),
        KeysCommand::Rotate(r) => (&r.keys, r.algorithm.as_deref()),
    };
    let mut settings = load_settings(args.config.as_deref(), std::env::vars_os())?;
    let config = to_config(&settings)?;
    if config
        .signing_key_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(
            "signing_key_path is set: the server signs with that one key, there is no key set \
             (unset it to use the key set in the data directory)"
                .into(),
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let set = open_key_set(&args.data_dir, &mut settings)?;
    match command {
        KeysCommand::List(_) => {
            set.reload().map_err(|e| e.to_string())?;
            print_keys(&set.key_states());
        }
        KeysCommand::Rotate(_) => {
            let algorithm = match algorithm {
                Some(name) => SigningAlgorithm::from_name(name)
                    .ok_or_else(|| format!("--algorithm {name:?}: RS256 or ML-DSA-65"))?,
                None => config.signing_algorithm().map_err(|e| e.to_string())?,
            };
            let info = set.rotate(algorithm).map_err(|e| e.to_string())?;
            eprintln!(
                "published next key {} ({}); it signs from {} (in {} s)",
                info.kid,
                info.algorithm,
                iso8601(info.signs_from),
                info.signs_from.saturating_sub(info.created)
            );
            println!("{}", info.kid);
        }
    }
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Keys(command)) => keys_command(command).unwrap_or_else(|e| fail(e)),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

#[tokio::main]
async fn serve(args: ServeArgs) {
    let mut settings =
        load_settings(args.config.as_deref(), std::env::vars_os()).unwrap_or_else(|e| fail(e));
    // SPEC 11: metrics on loopback unless `metrics_listen` (or
    // --metrics-listen) says otherwise; an empty value turns them off.
    if let Some(addr) = &args.metrics_listen {
        settings.insert("metrics_listen".into(), Value::String(addr.clone()));
    }
    settings
        .entry("metrics_listen")
        .or_insert_with(|| Value::String(DEFAULT_METRICS_LISTEN.into()));
    let keys = prepare(&args, &mut settings).unwrap_or_else(|e| fail(e));
    let config = to_config(&settings).unwrap_or_else(|e| fail(e));
    let redis_url = text(&settings, "redis_url").to_string();
    tracing::info!(
        issuer = %config.issuer,
        redis = !redis_url.is_empty(),
        revocations = %config.revocation_store_path,
        mint_audit = %config.mint_audit_path,
        "configuration loaded"
    );
    let mut builder = WalletAuth::builder(config.clone());
    builder = match keys {
        Keys::Single(key) => builder.with_signing_key(*key),
        Keys::Set(set) => {
            for k in set.key_states() {
                tracing::info!(kid = %k.kid, algorithm = %k.algorithm, state = %k.state, "signing key");
            }
            builder.with_key_set(set)
        }
    };
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
