//! Smart-contract wallets (EIP-1271): a verifier the embedding application
//! supplies, since it needs a chain node the crate does not have.

use async_trait::async_trait;

use crate::StoreError;

/// Checks signatures of smart-contract accounts (EIP-1271): Safe, Argent,
/// account-abstraction wallets. Such an account has no key of its own: the
/// contract at `address` decides, through
/// `isValidSignature(bytes32 hash, bytes signature)`, which answers the
/// magic value `0x1626ba7e` for a signature it accepts.
///
/// Pass one with
/// [`WalletAuthBuilder::with_contract_wallet_verifier`](crate::WalletAuthBuilder::with_contract_wallet_verifier).
/// Without one, only externally owned accounts sign in: an `eip191`
/// signature that is not 65 bytes, or that was not made by the address's
/// own key, is refused with a `detail` that says contract wallets are not
/// verified here.
///
/// # Contract
/// - It is asked only after the challenge was consumed and the message
///   matched the issued one byte for byte, and only when the signature is
///   not a valid EOA signature by `address`.
/// - `hash` is the EIP-191 hash of the message
///   ([`personal_message_hash`](crate::wallet::eip191::personal_message_hash)),
///   the value a contract wallet's `isValidSignature` expects.
/// - `chain_id` is the one the message names; query that chain.
/// - Answer `Ok(false)` for a refusal (the sign-in is a `401`), and
///   `Err(StoreError::Unavailable)` when the node cannot be reached (a
///   `503`; the challenge is spent all the same).
/// - It runs on the request's task: keep it bounded in time (a timeout on
///   the RPC call).
///
/// # Security
/// Only this answer stands between a contract address and a sign-in as
/// that address: query a node you trust, at the latest block.
///
/// # Example
/// A verifier backed by a JSON-RPC `eth_call` (here a stand-in that
/// accepts one known signature; a real one posts
/// `{"method":"eth_call","params":[{"to":address,"data":0x1626ba7e ‖ abi(hash, signature)},"latest"]}`
/// to the node for `chain_id` and compares the first 4 bytes of the result
/// with `0x1626ba7e`):
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use wallet_auth::{AuthConfig, ContractWalletVerifier, StoreError, WalletAuth};
///
/// struct Rpc {
///     accepted: Vec<u8>,
/// }
///
/// #[async_trait]
/// impl ContractWalletVerifier for Rpc {
///     async fn is_valid_signature(
///         &self,
///         chain_id: u64,
///         address: &[u8; 20],
///         hash: &[u8; 32],
///         signature: &[u8],
///     ) -> Result<bool, StoreError> {
///         let _ = (chain_id, address, hash);
///         // eth_call isValidSignature(hash, signature) on `address` ...
///         Ok(signature == self.accepted.as_slice())
///     }
/// }
///
/// # let pem = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys/test-rsa-2048.pem"));
/// let auth = WalletAuth::builder(AuthConfig {
///     supported_wallet_algorithms: vec!["eip191".into()],
///     allow_memory_revocations: true,
///     ..AuthConfig::default()
/// })
/// # .with_signing_key(wallet_auth::SigningKey::from_pem(pem).unwrap())
/// .with_contract_wallet_verifier(Arc::new(Rpc { accepted: vec![0xaa; 130] }))
/// .build()
/// .unwrap();
/// # drop(auth);
/// ```
#[async_trait]
pub trait ContractWalletVerifier: Send + Sync + 'static {
    /// Whether the contract account `address` on `chain_id` accepts
    /// `signature` for the EIP-191 `hash` of the sign-in message.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the chain cannot be asked.
    async fn is_valid_signature(
        &self,
        chain_id: u64,
        address: &[u8; 20],
        hash: &[u8; 32],
        signature: &[u8],
    ) -> Result<bool, StoreError>;
}

#[async_trait]
impl<T: ContractWalletVerifier + ?Sized> ContractWalletVerifier for std::sync::Arc<T> {
    async fn is_valid_signature(
        &self,
        chain_id: u64,
        address: &[u8; 20],
        hash: &[u8; 32],
        signature: &[u8],
    ) -> Result<bool, StoreError> {
        (**self)
            .is_valid_signature(chain_id, address, hash, signature)
            .await
    }
}
