//! A wallet client: asks a running server for a challenge, signs it, signs
//! in, and prints the tokens and their claims.
//!
//! ```text
//! cargo run --example standalone            # terminal 1
//! cargo run --example sign_in -- --algorithm Ed25519   # terminal 2
//! ```
//!
//! Options: `--server URL` (default `http://127.0.0.1:8100`), `--algorithm`
//! `ML-DSA-65` | `Ed25519` | `secp256k1` | `eip191` | `solana` (default
//! `ML-DSA-65`), `--key FILE` (a 32-byte seed in hex; created if missing, so
//! the same wallet signs in again), `--message` (a pico algorithm signs the
//! domain-bound message instead of the bare nonce; `eip191` and `solana`
//! always do), `--refresh` (also exchange the refresh token once).
//!
//! `eip191` signs the EIP-4361 message as an Ethereum wallet's
//! `personal_sign` does, `solana` the Sign-In With Solana message as a
//! Solana wallet's `signMessage` does; the server must list them in
//! `supported_wallet_algorithms`:
//!
//! ```text
//! SERVER_AUTH_SUPPORTED_WALLET_ALGORITHMS=eip191,solana cargo run --example standalone
//! cargo run --example sign_in -- --algorithm eip191
//! ```

#[path = "../tests/common/wallets.rs"]
mod wallets;

use base64::Engine;
use serde_json::{json, Value};
use wallets::Wallet;

const USAGE: &str =
    "usage: sign_in [--server URL] [--algorithm ALG] [--key FILE] [--message] [--refresh]";

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn load_seed(path: Option<&str>) -> Result<[u8; 32], Box<dyn std::error::Error>> {
    let mut seed = [0u8; 32];
    match path {
        Some(p) if std::path::Path::new(p).exists() => {
            hex::decode_to_slice(std::fs::read_to_string(p)?.trim(), &mut seed)?;
            eprintln!("using the wallet seed in {p}");
        }
        other => {
            getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
            if let Some(p) = other {
                std::fs::write(p, hex::encode(seed))?;
                eprintln!("created a new wallet seed in {p}");
            }
        }
    }
    Ok(seed)
}

async fn post(
    client: &reqwest::Client,
    url: String,
    body: Value,
) -> Result<Value, Box<dyn std::error::Error>> {
    let resp = client.post(&url).json(&body).send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {body}").into());
    }
    Ok(body)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut server, mut algorithm, mut key, mut refresh, mut sign_message) = (
        "http://127.0.0.1:8100".to_string(),
        "ML-DSA-65".to_string(),
        None,
        false,
        false,
    );
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => server = args.next().ok_or(USAGE)?,
            "--algorithm" => algorithm = args.next().ok_or(USAGE)?,
            "--key" => key = Some(args.next().ok_or(USAGE)?),
            "--refresh" => refresh = true,
            "--message" => sign_message = true,
            _ => return Err(USAGE.into()),
        }
    }
    let base = format!("{}/api/v1/auth", server.trim_end_matches('/'));
    if !["ML-DSA-65", "Ed25519", "secp256k1", "eip191", "solana"].contains(&algorithm.as_str()) {
        return Err(format!("unknown algorithm {algorithm:?}\n{USAGE}").into());
    }
    let account = algorithm == "eip191" || algorithm == "solana";
    let sign_message = sign_message || account;
    let wallet = Wallet::from_seed(&algorithm, load_seed(key.as_deref())?);
    let address = wallet.address();
    println!(
        "wallet   {} ({} bytes of public key)",
        wallet.algorithm(),
        wallet.public_key().len()
    );
    println!("address  {}…", &address[..address.len().min(44)]);

    let client = reqwest::Client::new();
    let challenge = post(
        &client,
        format!("{base}/challenge"),
        json!({ "address": address, "algorithm": wallet.algorithm() }),
    )
    .await?;
    let nonce = challenge["challenge"]
        .as_str()
        .ok_or("no challenge in reply")?;
    println!("challenge {nonce} (ttl {}s)", challenge["ttl"]);

    let mut body = json!({
        "address": address,
        "challenge": nonce,
        "algorithm": wallet.algorithm(),
    });
    let signed = if sign_message {
        let message = challenge["message"].as_str().ok_or("no message in reply")?;
        println!("\nsigning the message:\n{message}\n");
        body["message"] = json!(message);
        message
    } else {
        nonce
    };
    let signature = wallet.sign(signed.as_bytes());
    body["signature"] = match wallet.algorithm() {
        "eip191" => json!(format!("0x{}", hex::encode(&signature))),
        "solana" => json!(bs58::encode(&signature).into_string()),
        _ => json!(hex::encode(&signature)),
    };
    if !account {
        body["public_key"] = json!(hex::encode(wallet.public_key()));
    }
    let tokens = post(&client, format!("{base}/sign-in"), body).await?;
    let access = tokens["access_token"].as_str().ok_or("no access_token")?;
    println!("\naccess_token  {access}\n");
    println!("claims {}", serde_json::to_string_pretty(&claims(access))?);
    println!(
        "\nrefresh_token {}",
        tokens["refresh_token"].as_str().unwrap_or_default()
    );

    if refresh {
        let next = post(
            &client,
            format!("{base}/refresh"),
            json!({ "refresh_token": tokens["refresh_token"] }),
        )
        .await?;
        let access = next["access_token"].as_str().unwrap_or_default();
        println!(
            "\nrefreshed; new access token claims {}",
            serde_json::to_string_pretty(&claims(access))?
        );
    }
    Ok(())
}
