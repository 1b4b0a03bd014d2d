//! The signing keys at run time: [`WalletAuth::key_states`],
//! [`WalletAuth::reload_keys`] and the background reload of the key set
//! (every `key_reload_seconds`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Inner, WalletAuth};
use crate::keyset::{KeyInfo, KeyState};
use crate::Error;

impl WalletAuth {
    /// Every signing key and its state now: with a key set (SPEC 8) its
    /// next, current and retired keys; otherwise the one signing key
    /// (current) and the keys given with
    /// [`with_retired_key`](crate::WalletAuthBuilder::with_retired_key)
    /// (retired, with no removal time). Exactly one is `current`.
    pub fn key_states(&self) -> Vec<KeyInfo> {
        if let Some(set) = &self.inner.key_set {
            return set.key_states();
        }
        let tokens = &self.inner.tokens;
        let active = tokens.active_key();
        let mut out = vec![KeyInfo {
            kid: active.kid().to_string(),
            algorithm: active.algorithm(),
            state: KeyState::Current,
            created: 0,
            signs_from: 0,
            retires_after: None,
        }];
        for jwk in tokens.jwks().iter() {
            if jwk.kid == active.kid() {
                continue;
            }
            if let Some(algorithm) = jwk.algorithm() {
                out.push(KeyInfo {
                    kid: jwk.kid.clone(),
                    algorithm,
                    state: KeyState::Retired,
                    created: 0,
                    signs_from: 0,
                    retires_after: None,
                });
            }
        }
        out
    }

    /// Re-reads the key set's directory now (a rotation by another
    /// process), drops retired keys whose last token has expired, rotates
    /// if `key_rotation_days` says so, and puts the result in force. The
    /// background reload does this every `key_reload_seconds`; without a
    /// key set it does nothing.
    ///
    /// # Errors
    /// [`Error::Internal`] when the directory cannot be read; the keys in
    /// force stay as they were.
    pub async fn reload_keys(&self) -> Result<(), Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || reload(&inner))
            .await
            .map_err(|e| Error::Internal(format!("key reload task: {e}")))?
    }
}

fn reload(inner: &Inner) -> Result<(), Error> {
    let Some(set) = &inner.key_set else {
        return Ok(());
    };
    set.reload()
        .map_err(|e| Error::Internal(format!("key set reload: {e}")))?;
    // Installed every time: the order of the JWKS follows the signer.
    inner.tokens.install(set.scheduled(), &[]);
    Ok(())
}

/// Starts the background reload of `inner`'s key set, when it has one and
/// `build` runs inside a tokio runtime; it stops with the last handle.
pub(super) fn start_reload(inner: &Arc<Inner>) {
    if inner.key_set.is_none() {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            "WalletAuth built outside a tokio runtime: the key set is not re-read \
             automatically; call reload_keys"
        );
        return;
    };
    let every = Duration::from_secs(inner.config.key_reload_seconds.max(1));
    handle.spawn(reload_loop(Arc::downgrade(inner), every));
}

async fn reload_loop(weak: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { break };
        let result = tokio::task::spawn_blocking(move || reload(&inner)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "key set reload failed; keys in force kept"),
            Err(e) => tracing::warn!(error = %e, "key set reload task failed"),
        }
    }
}
