//! The registry's REST API, the part rtds uses: register a schema under a
//! subject (with the subject's compatibility), fetch a schema by id (cached:
//! an id's schema never changes), and the server's version for `rtds check`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::json;

use super::RegistryOpts;
use crate::error::UsageError;
use crate::secrets;

/// The Confluent API's media type.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a caller branches on: a record naming an id the registry does not
/// hold goes to the DLQ; an incompatible schema stops the stage at start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema id {0} is not in the registry")]
    UnknownId(u32),
    #[error("the registry refused the schema of subject {subject}: {reason}")]
    Incompatible { subject: String, reason: String },
}

/// A client of one registry. Cheap to clone (the cache is shared).
#[derive(Clone)]
pub struct Registry {
    base: String,
    http: reqwest::Client,
    auth: Option<(String, Option<String>)>,
    schemas: Arc<Mutex<HashMap<u32, Arc<str>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Id {
    id: u32,
}

#[derive(Deserialize)]
struct Schema {
    schema: String,
}

impl Registry {
    /// The configured registry, or `None` when no URL is set.
    pub fn new(opts: &RegistryOpts) -> Result<Option<Registry>> {
        let Some(url) = &opts.schema_registry_url else { return Ok(None) };
        let mut http = reqwest::Client::builder().connect_timeout(TIMEOUT).timeout(TIMEOUT);
        if let Some(path) = std::env::var_os("RTDS_SCHEMA_REGISTRY_CA_FILE") {
            let pem = std::fs::read(&path)
                .with_context(|| format!("reading RTDS_SCHEMA_REGISTRY_CA_FILE ({})", path.to_string_lossy()))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .context("RTDS_SCHEMA_REGISTRY_CA_FILE is not a PEM certificate")?;
            // That CA alone, as for the stores: not one beside the system's.
            http = http.tls_certs_only([ca]);
        }
        let auth = match std::env::var("RTDS_SCHEMA_REGISTRY_USER") {
            Ok(user) => Some((user, secrets::env("RTDS_SCHEMA_REGISTRY_PASSWORD")?)),
            Err(_) => None,
        };
        let http = http.build().context("building the schema registry's HTTP client")?;
        Ok(Some(Registry { base: url.trim_end_matches('/').to_owned(), http, auth, schemas: Default::default() }))
    }

    /// The base URL, for messages.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_to(method, &format!("{}/{path}", self.base)).header("accept", MEDIA_TYPE)
    }

    /// A request to `url` with the registry's credentials.
    fn request_to(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.auth {
            Some((user, password)) => r.basic_auth(user, password.as_deref()),
            None => r,
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        r.send().await.with_context(|| format!("{what} at the schema registry {}", self.base))
    }

    /// Register `schema` (Avro JSON) under `subject`, whose compatibility is
    /// set to `compatibility` first (BACKWARD: readers of the new version
    /// read the old records); its id. A refused schema is a usage error
    /// naming the subject and the registry's reason.
    pub async fn register(&self, subject: &str, schema: &str, compatibility: &str) -> Result<u32> {
        let what = format!("setting the compatibility of subject {subject}");
        let config = self.request(reqwest::Method::PUT, &format!("config/{subject}"));
        let r = self.send(config.json(&json!({ "compatibility": compatibility })), &what).await?;
        ok(r, &what).await?;
        let what = format!("registering a schema under subject {subject}");
        let post = self.request(reqwest::Method::POST, &format!("subjects/{subject}/versions"));
        let r = self.send(post.json(&json!({ "schema": schema })), &what).await?;
        if matches!(r.status().as_u16(), 409 | 422) {
            let reason = r.text().await.unwrap_or_default();
            let refused = RegistryError::Incompatible { subject: subject.to_owned(), reason: one_line(&reason) };
            return Err(anyhow::Error::new(UsageError(refused.to_string())).context(refused));
        }
        let Id { id } = ok(r, &what).await?.json().await.with_context(|| format!("{what}: reading the id"))?;
        self.schemas.lock().expect("the schema cache").insert(id, Arc::from(schema));
        Ok(id)
    }

    /// The schema (Avro JSON) of `id`, from the cache or the registry.
    pub async fn schema(&self, id: u32) -> Result<Arc<str>> {
        if let Some(s) = self.schemas.lock().expect("the schema cache").get(&id) {
            return Ok(s.clone());
        }
        let what = format!("fetching schema id {id}");
        let r = self.send(self.request(reqwest::Method::GET, &format!("schemas/ids/{id}")), &what).await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(RegistryError::UnknownId(id).into());
        }
        let Schema { schema } = ok(r, &what).await?.json().await.with_context(|| format!("{what}: reading it"))?;
        let schema: Arc<str> = Arc::from(schema);
        self.schemas.lock().expect("the schema cache").insert(id, schema.clone());
        Ok(schema)
    }

    /// The server's version, for `rtds check`: Apicurio's system info beside
    /// its ccompat API (its name without the storage label it carries, which
    /// says "In Memory" whatever the storage), else Confluent's
    /// `/v1/metadata/version`; "unknown" when neither answers but the API
    /// lists its subjects.
    pub async fn version(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Version {
            version: String,
            name: Option<String>,
        }
        let apicurio =
            self.base.strip_suffix("/apis/ccompat/v7").map(|root| format!("{root}/apis/registry/v3/system/info"));
        let confluent = format!("{}/v1/metadata/version", self.base);
        for url in [apicurio, Some(confluent)].into_iter().flatten() {
            let r = self.send(self.request_to(reqwest::Method::GET, &url), "asking the version").await?;
            if r.status().is_success()
                && let Ok(v) = r.json::<Version>().await
            {
                let name = v.name.as_deref().map(|n| n.split(" (").next().unwrap_or(n).trim());
                return Ok(name.map_or(v.version.clone(), |n| format!("{n} {}", v.version)));
            }
        }
        let r = self.send(self.request(reqwest::Method::GET, "subjects"), "listing subjects").await?;
        ok(r, "listing subjects").await?;
        Ok("unknown".into())
    }
}

/// `r` when it succeeded, else an error with its status and body.
async fn ok(r: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    anyhow::bail!("{what}: the registry answered {status}: {}", one_line(&body))
}

/// At most 300 characters of `s` on one line.
fn one_line(s: &str) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(300).collect()
}
