//! Bounded reads of what the issuer sends.

/// A failed request to the issuer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("answer over {0} bytes")]
    TooLarge(usize),
    #[error("status {0}")]
    Status(u16),
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("timed out")]
    Timeout,
}

/// Reads the whole body of `resp`, refusing more than `limit` bytes
/// (announced or actual).
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
