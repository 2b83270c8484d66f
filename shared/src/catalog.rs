//! Where ingest gets its sources and secrets, and how a rotated secret reaches it.
//!
//! [`SourceCatalog::sources`] is called per request and is cheap when cached.
//! [`StaticCatalog`] holds a fixed set (local runs, tests). [`SecretsManagerCatalog`] holds the
//! settings document (from the environment) and reads the secrets document from AWS Secrets
//! Manager (`GetSecretValue`, the secret's `SecretString`, shape in
//! [`Sources::from_parts`]) at cold start and again once the cache TTL has passed, so a secret
//! rotated in Secrets Manager (old and new both listed) is picked up without a redeploy.
//! If a refresh fails, the last good sources stay in use and the refresh is retried after
//! [`RETRY_AFTER_FAILURE_MS`]; with no good sources yet, ingest answers 503 and the provider
//! retries.

use std::sync::Arc;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::config::{ConfigError, Sources};

/// After a failed refresh, how long to keep serving the last good sources before trying again,
/// **milliseconds**.
pub const RETRY_AFTER_FAILURE_MS: i64 = 30_000;

/// Why no sources are available.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Secrets Manager could not be read.
    #[error("could not read the secrets: {0}")]
    Fetch(String),
    /// The settings or secrets document is invalid (values redacted).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The sources ingest serves.
#[async_trait::async_trait]
pub trait SourceCatalog: Send + Sync + std::fmt::Debug {
    /// The current sources.
    ///
    /// # Errors
    /// [`CatalogError`] when none can be had.
    async fn sources(&self) -> Result<Arc<Sources>, CatalogError>;
}

/// A fixed set of sources.
#[derive(Debug, Clone)]
pub struct StaticCatalog(Arc<Sources>);

impl StaticCatalog {
    /// Serves `sources`.
    pub fn new(sources: Sources) -> Self {
        Self(Arc::new(sources))
    }
}

#[async_trait::async_trait]
impl SourceCatalog for StaticCatalog {
    async fn sources(&self) -> Result<Arc<Sources>, CatalogError> {
        Ok(self.0.clone())
    }
}

struct Cached {
    sources: Arc<Sources>,
    /// When to read the secret again, epoch ms.
    refresh_at_ms: i64,
}

/// Settings from the environment, secrets from Secrets Manager, cached for a TTL.
pub struct SecretsManagerCatalog {
    client: Client,
    secret_id: String,
    settings_json: String,
    ttl_ms: i64,
    clock: Arc<dyn Clock>,
    cache: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for SecretsManagerCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerCatalog")
            .field("secret_id", &self.secret_id)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerCatalog {
    /// A catalog reading secret `secret_id` (name or ARN) and joining it with `settings_json`;
    /// cached for `ttl_seconds` (**seconds**).
    pub fn new(
        client: Client,
        secret_id: impl Into<String>,
        settings_json: impl Into<String>,
        ttl_seconds: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            settings_json: settings_json.into(),
            ttl_ms: i64::try_from(ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
            clock,
            cache: Mutex::new(None),
        }
    }

    async fn fetch(&self) -> Result<Sources, CatalogError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| CatalogError::Fetch(DisplayErrorContext(e).to_string()))?;
        let secrets = out
            .secret_string()
            .ok_or_else(|| CatalogError::Fetch("the secret has no SecretString".into()))?;
        Ok(Sources::from_parts(&self.settings_json, secrets)?)
    }
}

#[async_trait::async_trait]
impl SourceCatalog for SecretsManagerCatalog {
    async fn sources(&self) -> Result<Arc<Sources>, CatalogError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now_ms();
        if let Some(c) = cache.as_ref()
            && now < c.refresh_at_ms
        {
            return Ok(c.sources.clone());
        }
        match self.fetch().await {
            Ok(sources) => {
                let sources = Arc::new(sources);
                *cache = Some(Cached {
                    sources: sources.clone(),
                    refresh_at_ms: now.saturating_add(self.ttl_ms),
                });
                tracing::info!(secret_id = %self.secret_id, sources = sources.iter().count(), "sources loaded");
                Ok(sources)
            }
            Err(e) => match cache.as_mut() {
                Some(c) => {
                    tracing::error!(error = %e, "refreshing the secrets failed; keeping the last good sources");
                    c.refresh_at_ms = now.saturating_add(RETRY_AFTER_FAILURE_MS);
                    Ok(c.sources.clone())
                }
                None => Err(e),
            },
        }
    }
}
