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
//! JSON array). SIGTERM or Ctrl-C shuts it down cleanly. A client gets 10 s
//! to send a request's headers and 30 s for its body.
//!
//! With `redis_url` (or `SERVER_AUTH_REDIS_URL`) set, challenges, the
//! denylist and the mint audit live in Redis, shared by every instance (the
//! `redis` feature, on by default); without it, memory and files.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use wallet_auth::{AuthConfig, SigningKey, WalletAuth};

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

/// Reads the YAML file's `server_auth:` tree (or a bare mapping), then
/// applies `SERVER_AUTH_<NAME>` variables, typed after the defaults.
fn load_config(path: Option<&Path>) -> Result<AuthConfig, String> {
    let defaults = serde_json::to_value(AuthConfig::default()).map_err(|e| e.to_string())?;
    let Value::Object(defaults) = defaults else {
        return Err("config defaults are not a map".into());
    };
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
        match tree {
            Value::Object(m) => merged = m,
            Value::Null => {}
            _ => return Err(format!("{}: server_auth must be a mapping", path.display())),
        }
        for key in merged.keys() {
            if !defaults.contains_key(key) {
                tracing::warn!(key, "unknown configuration key ignored");
            }
        }
    }
    for (name, default) in &defaults {
        let var = format!("SERVER_AUTH_{}", name.to_uppercase());
        let Ok(raw) = std::env::var(&var) else {
            continue;
        };
        let value = match default {
            Value::Bool(_) => Value::Bool(matches!(
                raw.to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )),
            Value::Number(_) => Value::Number(
                raw.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{var} must be a non-negative integer"))?
                    .into(),
            ),
            Value::Array(_) if raw.trim_start().starts_with('[') => {
                serde_json::from_str(&raw).map_err(|e| format!("{var}: invalid JSON array: {e}"))?
            }
            Value::Array(_) => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.into()))
                    .collect(),
            ),
            _ => Value::String(raw),
        };
        merged.insert(name.clone(), value);
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| format!("invalid configuration: {e}"))
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

fn load_or_create_key(path: &Path) -> Result<SigningKey, String> {
    if path.exists() {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let key = SigningKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), kid = key.kid(), "loaded signing key");
        return Ok(key);
    }
    let key = SigningKey::generate(2048).map_err(|e| e.to_string())?;
    let pem = key.to_pkcs8_pem().map_err(|e| e.to_string())?;
    write_private(path, pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), kid = key.kid(), "created a new signing key (mode 0600)");
    Ok(key)
}

fn prepare(args: &Args, config: &mut AuthConfig) -> Result<SigningKey, String> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let in_data = |name: &str| args.data_dir.join(name).to_string_lossy().into_owned();
    if !config.redis_url.is_empty() {
        // Redis holds the denylist and the audit; the files are not used.
        if !config.revocation_store_path.is_empty() || !config.mint_audit_path.is_empty() {
            tracing::warn!(
                "redis_url is set: revocation_store_path and mint_audit_path are ignored"
            );
        }
    } else {
        if config.revocation_store_path.is_empty() {
            config.revocation_store_path = in_data("revocations.jsonl");
        }
        if config.mint_audit_path.is_empty() {
            config.mint_audit_path = in_data("mints.jsonl");
        }
    }
    let key_path = match &config.signing_key_path {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => args.data_dir.join("signing-key.pem"),
    };
    let key = load_or_create_key(&key_path)?;
    config.signing_key_path = Some(key_path.to_string_lossy().into_owned());
    prepare_admin(args, config)?;
    Ok(key)
}

/// With `auto_create_admin` on and no password configured, a password is
/// generated on first start, printed once, and only its argon2id hash kept.
fn prepare_admin(args: &Args, config: &mut AuthConfig) -> Result<(), String> {
    if !config.auto_create_admin
        || config
            .admin_password
            .as_deref()
            .is_some_and(|p| !p.is_empty())
    {
        return Ok(());
    }
    let path = args.data_dir.join("admin-password.argon2");
    if path.exists() {
        let hash = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        config.admin_password = Some(hash.trim().into());
        tracing::info!(path = %path.display(), "loaded the admin password hash");
        return Ok(());
    }
    let password = wallet_auth::password::generate_password();
    let hash = wallet_auth::password::hash_password(&password).map_err(|e| e.to_string())?;
    write_private(&path, hash.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!(
        "\n  Generated the bootstrap admin password (shown once; only its hash is kept in {}):\n\n    email:    {}\n    password: {}\n",
        path.display(),
        config.admin_email,
        password
    );
    config.admin_password = Some(hash.into());
    Ok(())
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
    config: &AuthConfig,
) -> Result<wallet_auth::WalletAuthBuilder, String> {
    use std::sync::Arc;
    use wallet_auth::{RedisOptions, RedisStores};

    let stores = RedisStores::connect(&config.redis_url, RedisOptions::default())
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
    let mut config = load_config(args.config.as_deref()).unwrap_or_else(|e| fail(e));
    let key = prepare(&args, &mut config).unwrap_or_else(|e| fail(e));
    tracing::info!(
        issuer = %config.issuer,
        redis = !config.redis_url.is_empty(),
        revocations = %config.revocation_store_path,
        mint_audit = %config.mint_audit_path,
        "configuration loaded"
    );
    let mut builder = WalletAuth::builder(config.clone()).with_signing_key(key);
    if !config.redis_url.is_empty() {
        builder = with_redis(builder, &config)
            .await
            .unwrap_or_else(|e| fail(e));
    }
    let auth = builder.build().unwrap_or_else(|e| fail(e.to_string()));
    let app = auth
        .router()
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {}: {e}", args.listen)));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| fail(e.to_string()));
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
