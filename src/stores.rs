//! Opening the stores that the configuration names.

use std::sync::Arc;

use crate::audit::{MemoryMintAuditStore, MintAuditStore};
use crate::revocation::{MemoryRevocationStore, RevocationStore};
use crate::{AuthConfig, ConfigError, StoreError};

pub(crate) fn open_revocations(
    config: &AuthConfig,
) -> Result<Arc<dyn RevocationStore>, ConfigError> {
    if config.revocation_store_path.is_empty() {
        return Ok(Arc::new(MemoryRevocationStore::new()));
    }
    Err(ConfigError::Store {
        field: "revocation_store_path",
        source: StoreError::Unavailable("JSON Lines store not built yet".into()),
    })
}

pub(crate) fn open_audit(config: &AuthConfig) -> Result<Arc<dyn MintAuditStore>, ConfigError> {
    if config.mint_audit_path.is_empty() {
        return Ok(Arc::new(MemoryMintAuditStore::new(
            config.mint_audit_max_in_memory,
        )));
    }
    Err(ConfigError::Store {
        field: "mint_audit_path",
        source: StoreError::Unavailable("JSON Lines store not built yet".into()),
    })
}
