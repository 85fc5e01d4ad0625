//! The randomuser.me-compatible HTTP source: pages of `?results=N`, with
//! timeouts, and retries with exponential backoff and jitter on 429, 5xx,
//! timeouts, connection errors and unusable bodies, honouring Retry-After.

use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest wait between two attempts, whatever the server asks for.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Settings of the source, taken from `cli::IngestArgs`.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub api_seed: Option<String>,
    pub nat: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub retry_base: Duration,
}

/// One user as the API sent it, and its `login.uuid` when it has one.
#[derive(Debug)]
pub struct User {
    pub key: Option<String>,
    pub json: Box<RawValue>,
}

pub struct RandomUser {
    client: reqwest::Client,
    opts: Options,
    /// The API's page number; with a seed, page N is always the same users.
    page: u64,
    /// Attempts that failed and were retried (for the summary).
    pub retried: u64,
}

/// Why one attempt failed, and whether it is worth another.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    #[error("{0}")]
    Retry(String, Option<Duration>),
    #[error("{0}")]
    Fatal(String),
}

impl RandomUser {
    pub fn new(opts: Options) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .timeout(opts.timeout)
            .user_agent(concat!("rtds/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("creating the HTTP client")?;
        Ok(Self { client, opts, page: 1, retried: 0 })
    }

    /// Fetch `n` users (one request, retried as configured).
    pub async fn fetch(&mut self, n: u32) -> Result<Vec<User>> {
        let mut attempt = 0;
        loop {
            match self.try_fetch(n).await {
                Ok(users) => {
                    self.page += 1;
                    return Ok(users);
                }
                Err(Attempt::Fatal(msg)) => {
                    anyhow::bail!("fetching users from {}: {msg}", self.opts.url)
                }
                Err(Attempt::Retry(msg, retry_after)) => {
                    if attempt >= self.opts.retries {
                        anyhow::bail!(
                            "fetching users from {}: {msg} (gave up after {} attempt(s))",
                            self.opts.url,
                            attempt + 1
                        );
                    }
                    let wait = retry_after.unwrap_or_else(|| backoff(self.opts.retry_base, attempt)).min(MAX_BACKOFF);
                    tracing::warn!(url = %self.opts.url, attempt = attempt + 1, wait = ?wait, "request failed, retrying: {msg}");
                    self.retried += 1;
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn try_fetch(&self, n: u32) -> Result<Vec<User>, Attempt> {
        let mut query: Vec<(&str, String)> = vec![("results", n.to_string())];
        if let Some(seed) = &self.opts.api_seed {
            query.push(("seed", seed.clone()));
            query.push(("page", self.page.to_string()));
        }
        if let Some(nat) = &self.opts.nat {
            query.push(("nat", nat.clone()));
        }
        let resp = self.client.get(&self.opts.url).query(&query).send().await.map_err(|e| request_error(&e))?;
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let after = retry_after(resp.headers());
            return Err(Attempt::Retry(format!("HTTP {status}"), after));
        }
        if !status.is_success() {
            return Err(Attempt::Fatal(format!("HTTP {status}")));
        }
        let body = resp.bytes().await.map_err(|e| request_error(&e))?;
        parse_page(&body).map_err(|e| Attempt::Retry(e, None))
    }
}

fn request_error(e: &reqwest::Error) -> Attempt {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The source chain says why (refused, reset, DNS); keep it on one line.
    let mut why = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        why = format!("{why}: {s}");
        src = s.source();
    }
    if e.is_builder() {
        Attempt::Fatal(format!("{kind}: {why}"))
    } else {
        Attempt::Retry(format!("{kind}: {why}"), None)
    }
}

/// `Retry-After` (RFC 9110): seconds, or an HTTP date (the wait until then;
/// none if it has passed).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

/// Full-jitter exponential backoff: uniform in [0, base * 2^attempt], at least 1 ms.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF);
    let ms = rand::rng().random_range(1..=cap.as_millis().max(1) as u64);
    Duration::from_millis(ms)
}

/// A page must be a JSON object with a `results` array; each element is kept
/// byte for byte.
pub fn parse_page(body: &[u8]) -> Result<Vec<User>, String> {
    #[derive(Deserialize)]
    struct Page {
        results: Vec<Box<RawValue>>,
    }
    let page: Page = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) if e.is_data() => return Err(format!("response has no `results` array: {e}")),
        Err(e) => return Err(format!("response is not valid JSON: {e}")),
    };
    Ok(page.results.into_iter().map(|json| User { key: login_uuid(&json), json }).collect())
}

/// `login.uuid` of a record, if it has a string there.
fn login_uuid(json: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Login {
        uuid: Option<String>,
    }
    #[derive(Deserialize)]
    struct Rec {
        login: Option<Login>,
    }
    serde_json::from_str::<Rec>(json.get()).ok()?.login?.uuid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_keep_records_verbatim_and_find_keys() {
        let body = br#"{"results":[{"login":{"uuid":"u1"},"x":1.50},{"name":"no login"}],"info":{}}"#;
        let users = parse_page(body).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].key.as_deref(), Some("u1"));
        assert_eq!(users[0].json.get(), r#"{"login":{"uuid":"u1"},"x":1.50}"#);
        assert_eq!(users[1].key, None);
    }

    #[test]
    fn bad_pages_say_why() {
        assert!(parse_page(b"{\"results\":[{").unwrap_err().contains("not valid JSON"));
        assert!(parse_page(b"{\"results\":{}}").unwrap_err().contains("no `results` array"));
        assert!(parse_page(b"{\"error\":\"busy\"}").unwrap_err().contains("no `results` array"));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            retry_after(&h)
        };
        assert_eq!(with("7"), Some(Duration::from_secs(7)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = with(&soon).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), None, "a date in the past: no wait");
        assert_eq!(with("soon"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 0..30 {
            let d = backoff(base, attempt);
            assert!(d >= Duration::from_millis(1) && d <= MAX_BACKOFF, "{d:?}");
            assert!(d <= base * 2u32.pow(attempt.min(16)), "{d:?} at {attempt}");
        }
    }
}
