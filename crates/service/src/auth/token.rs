//! Bearer-token validation: the algorithm allow-list, the signature against a trusted key, and
//! `iss`, `aud`, `exp`, `nbf` with the configured leeway; the claims become a `Principal`.
//! Validated tokens are cached until they expire, so a client's every request after its first
//! costs a map lookup rather than a signature check.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use quick_cache::sync::Cache;
use serde::Deserialize;

use crate::auth::keys::KeyStore;
use crate::config::{AuthSettings, DEFAULT_ALGORITHMS};
use domain::smart::{Grants, Policy};

/// Longest token read (a SMART access token is a few hundred bytes to a few KiB).
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Validated tokens remembered.
const CACHED_TOKENS: usize = 10_000;

/// Who is asking, and what they may do.
#[derive(Debug)]
pub(crate) struct Principal {
    pub(crate) subject: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) fhir_user: Option<String>,
    pub(crate) policy: Policy,
    /// The `scope` claim as granted, kept with a Subscription to judge its notifications.
    pub(crate) scope: String,
    /// `exp`, seconds since the epoch.
    expires: u64,
}

impl Principal {
    /// The rate-limit and log key: the client, else the subject.
    pub(crate) fn key(&self) -> Option<&str> {
        self.client_id.as_deref().or(self.subject.as_deref())
    }

    /// The principal a background job acts as: the scopes and patient its client asked with
    /// (kept with the job), and no identity or expiry of its own.
    pub(crate) fn stored(scope: &str, patient: Option<String>) -> Principal {
        Principal {
            subject: None,
            issuer: None,
            client_id: None,
            fhir_user: None,
            policy: Policy::new(Grants::parse(scope), patient),
            scope: scope.to_owned(),
            expires: u64::MAX,
        }
    }
}

/// The claims this server reads. `scope` is a space-separated string (SMART); `scp` an array
/// (some servers).
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    iss: Option<String>,
    exp: u64,
    scope: Option<String>,
    scp: Option<Vec<String>>,
    patient: Option<String>,
    #[serde(rename = "fhirUser")]
    fhir_user: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
}

/// Checks tokens.
pub(crate) struct Validator {
    keys: KeyStore,
    algorithms: Vec<Algorithm>,
    validation: Validation,
    leeway: u64,
    cache: Cache<String, Arc<Principal>>,
}

impl Validator {
    /// Fails when the settings cannot protect anything: no issuer, no audience, no key source,
    /// or an algorithm outside the allow-list.
    pub(crate) async fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        let issuer = settings.issuer.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "authorization is on but CAREPLAN_AUTH_ISSUER is not set (or set CAREPLAN_AUTH_DISABLED=true)"
            )
        })?;
        let audience = settings
            .audience
            .clone()
            .ok_or_else(|| anyhow::anyhow!("authorization is on but CAREPLAN_AUTH_AUDIENCE is not set"))?;
        if settings.jwks_url.is_none() && settings.public_key_files.is_empty() {
            anyhow::bail!(
                "authorization is on but neither CAREPLAN_AUTH_JWKS_URL nor CAREPLAN_AUTH_PUBLIC_KEYS is set"
            );
        }
        let mut algorithms = Vec::new();
        for name in &settings.algorithms {
            if !DEFAULT_ALGORITHMS.contains(&name.as_str()) {
                anyhow::bail!("the signing algorithm {name} is not accepted (only RS256, RS384, ES256, ES384)");
            }
            algorithms.push(name.parse::<Algorithm>()?);
        }
        if algorithms.is_empty() {
            anyhow::bail!("CAREPLAN_AUTH_ALGORITHMS names no algorithm");
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = algorithms.clone();
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway.as_secs();
        Ok(Self {
            keys: KeyStore::new(settings).await?,
            algorithms,
            validation,
            leeway: settings.leeway.as_secs(),
            cache: Cache::new(CACHED_TOKENS),
        })
    }

    /// The principal a token stands for, or why it does not count.
    pub(crate) async fn validate(&self, token: &str) -> Result<Arc<Principal>, String> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("the token is longer than {MAX_TOKEN_BYTES} bytes"));
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(principal) = self.cache.get(token) {
            if now <= principal.expires.saturating_add(self.leeway) {
                return Ok(principal);
            }
            self.cache.remove(token);
            return Err("the token has expired".into());
        }
        // `alg: none` and unknown algorithms fail here: the header does not parse.
        let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is not a signed JWT".to_owned())?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!("tokens signed with {:?} are not accepted", header.alg));
        }
        let keys = self.keys.find(header.kid.as_deref(), header.alg).await;
        if keys.is_empty() {
            return Err("no trusted key matches the token's key id".into());
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let mut last = "the token's signature is not valid".to_owned();
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    let principal = Arc::new(principal(data.claims));
                    self.cache.insert(token.to_owned(), principal.clone());
                    return Ok(principal);
                }
                Err(err) => {
                    last = describe(err.kind());
                    if !matches!(err.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

fn principal(claims: Claims) -> Principal {
    let scope = match (claims.scope, claims.scp) {
        (Some(scope), _) => scope,
        (None, Some(list)) => list.join(" "),
        (None, None) => String::new(),
    };
    let grants = Grants::parse(&scope);
    let granted = scope.clone();
    if !grants.ignored.is_empty() {
        let ignored: Vec<&str> = grants.ignored.iter().map(|(s, _)| s.as_str()).collect();
        tracing::debug!(?ignored, "scopes set aside");
    }
    Principal {
        subject: claims.sub,
        issuer: claims.iss,
        client_id: claims.client_id.or(claims.azp),
        fhir_user: claims.fhir_user,
        policy: Policy::new(grants, claims.patient),
        scope: granted,
        expires: claims.exp,
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "the token was issued by an issuer this server does not trust",
        ErrorKind::InvalidAudience => "the token is meant for another audience",
        ErrorKind::InvalidSignature => "the token's signature is not valid",
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key",
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss, aud)",
        _ => "the token is malformed",
    }
    .to_owned()
}
