//! What the benchmark drivers (`loadtest`, `stream_latency`) share, included
//! by each with `#[path]`. Cargo builds no example from this folder: it has
//! no `main.rs`.

/// The drivers' error: anything, sendable across tasks.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `http://HOST:PORT/prefix` -> (`HOST:PORT`, `/prefix`).
pub fn split_base(base: &str) -> Result<(String, String), Error> {
    let rest = base
        .strip_prefix("http://")
        .ok_or("--base must start with http://")?;
    let (host, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    Ok((host.to_string(), prefix.trim_end_matches('/').to_string()))
}

/// The `p` quantile (0 to 1, nearest rank) of ascending `sorted`; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
