//! Signing keys: from PEM files (read once at start-up) and from the authorization server's
//! JWKS, cached and fetched again when a token names an unknown `kid` (at most once per
//! `jwks_min_refresh`) or the cache is older than `jwks_max_age`. A JWKS endpoint that fails
//! only means unknown keys stay unknown (their tokens get 401): the service keeps serving with
//! the keys it has.
//!
//! Only RSA and EC public keys are ever taken: a symmetric (`oct`) key in a JWKS is ignored,
//! so no token can be checked as HMAC with a key the server believes public.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::config::AuthSettings;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// One verification key.
#[derive(Clone)]
pub(crate) struct Key {
    /// `None` for PEM keys: they match any `kid`.
    kid: Option<String>,
    /// The algorithm the JWK pins with `alg`, if it does.
    alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl Key {
    fn fits(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        let family_ok = self.key.family() == alg.family()
            && matches!(self.key.family(), AlgorithmFamily::Rsa | AlgorithmFamily::Ec);
        let kid_ok = match (&self.kid, kid) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        family_ok && kid_ok && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

#[derive(Default)]
struct Cached {
    keys: Vec<Key>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

/// Every key the server trusts.
pub(crate) struct KeyStore {
    pem: Vec<Key>,
    jwks_url: Option<String>,
    http: reqwest::Client,
    cached: RwLock<Cached>,
    /// One fetch at a time; others wait for it and then look again.
    fetching: tokio::sync::Mutex<()>,
    min_refresh: Duration,
    max_age: Duration,
}

impl KeyStore {
    /// Read the PEM files (failing start-up when one is unreadable or holds no public key) and
    /// try a first JWKS fetch (a failure is logged, not fatal).
    pub(crate) async fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        let mut pem = Vec::new();
        for path in &settings.public_key_files {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read the public key {}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&bytes)
                .or_else(|_| DecodingKey::from_ec_pem(&bytes))
                .with_context(|| format!("{} holds no RSA or EC public key in PEM form", path.display()))?;
            pem.push(Key { kid: None, alg: None, key });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .context("cannot build the JWKS client")?;
        let store = Self {
            pem,
            jwks_url: settings.jwks_url.clone(),
            http,
            cached: RwLock::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(()),
            min_refresh: settings.jwks_min_refresh,
            max_age: settings.jwks_max_age,
        };
        if store.jwks_url.is_some() {
            store.refresh().await;
        }
        Ok(store)
    }

    /// The keys a token signed with `alg` and naming `kid` may have been signed with.
    pub(crate) async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
        let (found, stale) = self.lookup(kid, alg);
        if !found.is_empty() && !stale {
            return found;
        }
        if self.jwks_url.is_some() && self.may_fetch() {
            let _guard = self.fetching.lock().await;
            // Another request may have fetched while this one waited.
            if self.may_fetch() {
                self.refresh().await;
            }
            return self.lookup(kid, alg).0;
        }
        found
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> (Vec<Key>, bool) {
        let cached = self.cached.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let stale = cached.fetched.is_some_and(|at| at.elapsed() > self.max_age);
        let found = self.pem.iter().chain(&cached.keys).filter(|k| k.fits(kid, alg)).cloned().collect();
        (found, stale)
    }

    fn may_fetch(&self) -> bool {
        let cached = self.cached.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        cached.attempted.is_none_or(|at| at.elapsed() >= self.min_refresh)
    }

    /// Fetch the JWKS; on failure keep the keys already known.
    async fn refresh(&self) {
        let Some(url) = &self.jwks_url else { return };
        let now = Instant::now();
        let fetched = fetch(&self.http, url).await;
        let mut cached = self.cached.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        cached.attempted = Some(now);
        match fetched {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS fetched");
                cached.keys = keys;
                cached.fetched = Some(now);
            }
            Err(err) => tracing::warn!(error = format!("{err:#}"), "cannot fetch the JWKS; keeping the keys known"),
        }
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<Key>> {
    let response = http.get(url).send().await.context("JWKS request failed")?.error_for_status()?;
    if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
        anyhow::bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
    }
    let body = response.bytes().await.context("JWKS body could not be read")?;
    if body.len() > MAX_JWKS_BYTES {
        anyhow::bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
    }
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(&body).context("the JWKS is not a JSON key set")?;
    let mut keys = Vec::new();
    for value in set.keys {
        // Keys of other kinds (oct, OKP) or uses (enc) are not ours to take.
        let kty = value.get("kty").and_then(|v| v.as_str()).unwrap_or_default();
        let usage = value.get("use").and_then(|v| v.as_str()).unwrap_or("sig");
        if !matches!(kty, "RSA" | "EC") || usage != "sig" {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
        keys.push(Key { kid: jwk.common.key_id.clone(), alg, key });
    }
    Ok(keys)
}
