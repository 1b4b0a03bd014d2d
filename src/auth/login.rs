//! The bootstrap admin's password login (SPEC 1 `POST /login`).

use super::mint::{Session, TokenPair};
use super::{check_len, WalletAuth, MAX_TEXT_LEN};
use crate::Error;

impl WalletAuth {
    /// Password login of the bootstrap admin (SPEC 1 `POST /login`).
    ///
    /// # Errors
    /// `LoginDisabled`, `InvalidCredentials`, `TooManyAttempts`, `Overloaded`.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<TokenPair, Error> {
        self.login_for_audience(email, password, client_ip, None)
            .await
    }

    /// As [`login`](Self::login), the tokens minted for `audience` (one of
    /// the configured `audiences`; SPEC 2).
    ///
    /// # Errors
    /// As [`login`](Self::login); `BadRequest` for an audience not allowed
    /// (checked before the password).
    pub async fn login_for_audience(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<std::net::IpAddr>,
        audience: Option<&str>,
    ) -> Result<TokenPair, Error> {
        let Some(admin) = &self.inner.admin else {
            return Err(Error::LoginDisabled);
        };
        check_len("email", email, MAX_TEXT_LEN)?;
        check_len("password", password, MAX_TEXT_LEN)?;
        let aud = self.audience_for(audience)?;
        admin
            .check(email, password, client_ip, self.inner.clock.now_secs())
            .await?;
        self.mint_login(email, aud).await
    }

    /// Mints a token pair for a password login whose credentials have been
    /// checked.
    async fn mint_login(&self, email: &str, aud: String) -> Result<TokenPair, Error> {
        let now = self.inner.clock.now_secs();
        let role = self.inner.config.admin_role.clone();
        let session = Session::begin(email, &role, now, self.inner.password_version.clone(), aud);
        let (access, refresh) = self.session_pair(&session, now);
        self.issue_pair(access, refresh, || Ok(())).await
    }
}
