//! Opening the stores that the configuration names. A path that cannot be
//! opened for writing is a start-up error, never a fallback to memory.

use std::sync::Arc;

use crate::audit::{JsonlMintAuditStore, MemoryMintAuditStore, MintAuditStore};
use crate::revocation::{JsonlRevocationStore, MemoryRevocationStore, RevocationStore};
use crate::{AuthConfig, ConfigError};

pub(crate) fn open_revocations(
    config: &AuthConfig,
) -> Result<Arc<dyn RevocationStore>, ConfigError> {
    if config.revocation_store_path.is_empty() {
        return Ok(Arc::new(MemoryRevocationStore::new()));
    }
    let store = JsonlRevocationStore::open(&config.revocation_store_path).map_err(|source| {
        ConfigError::Store {
            field: "revocation_store_path",
            source,
        }
    })?;
    Ok(Arc::new(store))
}

pub(crate) fn open_audit(config: &AuthConfig) -> Result<Arc<dyn MintAuditStore>, ConfigError> {
    if config.mint_audit_path.is_empty() {
        return Ok(Arc::new(MemoryMintAuditStore::new(
            config.mint_audit_max_in_memory,
        )));
    }
    let store = JsonlMintAuditStore::open(&config.mint_audit_path, config.mint_audit_max_in_memory)
        .map_err(|source| ConfigError::Store {
            field: "mint_audit_path",
            source,
        })?;
    Ok(Arc::new(store))
}
