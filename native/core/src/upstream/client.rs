//! The upstream HTTP client: pooled connections, retries with backoff that honour
//! `Retry-After`, a circuit breaker, and timeouts per phase. Bodies are not read here:
//! the caller takes the whole body or streams it chunk by chunk.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response};

use super::breaker::{BreakerState, CircuitBreaker};
use super::policy::{parse_retry_after, retryable_status, RetryPolicy};
use crate::error::{CoreError, CoreResult};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Prefix of every path, e.g. `https://api.groq.com/openai/v1`.
    pub base_url: String,
    /// Sent with every request (the provider's key goes here).
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    /// From sending the request to the response's headers, per attempt.
    pub response_timeout: Duration,
    /// The longest silence while reading a body: between two chunks, or for a whole body.
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
    /// Failures in a row that open the breaker (0: never), and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub pool_max_idle_per_host: usize,
    /// PEM certificates trusted besides the system's, for a gateway behind a private CA.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl ClientConfig {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
            pool_max_idle_per_host: 64,
            extra_roots_pem: None,
        }
    }
}

/// An answer whose headers arrived; its body is still on the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// 1 when the first attempt answered.
    pub attempts: u32,
    pub body: BodyStream,
}

/// The body of an answer, chunk by chunk as the upstream sends them.
#[derive(Debug)]
pub struct BodyStream {
    response: Option<Response>,
    read_timeout: Duration,
    url: String,
    pending: Option<CoreError>, // an error met while gathering a burst, reported next
}

impl BodyStream {
    /// The next chunk; `None` at the end. A cut connection or a silence longer than the read
    /// timeout is an error, and the stream is over after it.
    pub async fn next(&mut self) -> CoreResult<Option<Bytes>> {
        if let Some(err) = self.pending.take() {
            return Err(err);
        }
        let Some(response) = self.response.as_mut() else {
            return Ok(None);
        };
        let outcome = tokio::time::timeout(self.read_timeout, response.chunk()).await;
        let result = match outcome {
            Err(_) => Err(CoreError::UpstreamTimeout {
                url: self.url.clone(),
                phase: "reading the body",
                seconds: self.read_timeout.as_secs_f64(),
            }),
            Ok(Err(err)) => Err(CoreError::UpstreamStream {
                url: self.url.clone(),
                reason: describe(&err),
            }),
            Ok(Ok(chunk)) => Ok(chunk),
        };
        if !matches!(result, Ok(Some(_))) {
            self.response = None;
        }
        result
    }

    /// The next chunk joined with every chunk already received behind it (up to `limit`
    /// bytes), without waiting for more: a caller that crosses into another runtime per chunk
    /// (Python) pays that once per burst instead of once per frame.
    pub async fn next_burst(&mut self, limit: usize) -> CoreResult<Option<Bytes>> {
        let Some(first) = self.next().await? else {
            return Ok(None);
        };
        let mut burst: Option<Vec<u8>> = None;
        while burst.as_ref().map_or(first.len(), Vec::len) < limit {
            let Some(response) = self.response.as_mut() else {
                break;
            };
            // A zero timeout polls `chunk()` once: ready data is taken, none is waited for.
            // Dropping the pending future loses nothing, as a frame is only taken when ready.
            match tokio::time::timeout(Duration::ZERO, response.chunk()).await {
                Ok(Ok(Some(more))) => burst
                    .get_or_insert_with(|| first.to_vec())
                    .extend_from_slice(&more),
                Ok(Ok(None)) => {
                    self.response = None;
                    break;
                }
                // The error is kept for the next call, after this burst is delivered.
                Ok(Err(err)) => {
                    self.pending = Some(CoreError::UpstreamStream {
                        url: self.url.clone(),
                        reason: describe(&err),
                    });
                    self.response = None;
                    break;
                }
                Err(_) => break, // nothing more yet
            }
        }
        Ok(Some(burst.map_or(first, Bytes::from)))
    }

    /// The rest of the body in one piece.
    pub async fn read_all(&mut self) -> CoreResult<Bytes> {
        let Some(first) = self.next().await? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.next().await? else {
            return Ok(first); // the usual case for a small JSON answer: no copy
        };
        let mut whole = Vec::with_capacity(first.len() + second.len());
        whole.extend_from_slice(&first);
        whole.extend_from_slice(&second);
        while let Some(chunk) = self.next().await? {
            whole.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(whole))
    }

    /// Stop reading: the connection is closed rather than returned to the pool.
    pub fn close(&mut self) {
        self.response = None;
    }
}

pub struct UpstreamClient {
    http: reqwest::Client,
    config: ClientConfig,
    breaker: Mutex<CircuitBreaker>,
    retries: AtomicU64,
}

static TLS_PROVIDER: Once = Once::new();

impl UpstreamClient {
    pub fn new(config: ClientConfig) -> CoreResult<Self> {
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(CoreError::InvalidArgument(format!(
                "base URL {:?} must start with http:// or https://",
                config.base_url
            )));
        }
        TLS_PROVIDER.call_once(|| {
            // Another library in the process may have installed one first; either serves.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = &config.extra_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|roots| !roots.is_empty())
                .ok_or_else(|| {
                    CoreError::InvalidArgument("the CA bundle holds no PEM certificate".into())
                })?;
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder
            .default_headers(header_map(&config.headers)?)
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|err| CoreError::InvalidArgument(format!("HTTP client: {err}")))?;
        let breaker = CircuitBreaker::new(config.breaker_failures, config.breaker_cooldown);
        Ok(Self {
            http,
            config,
            breaker: Mutex::new(breaker),
            retries: AtomicU64::new(0),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker_lock().state(Instant::now())
    }

    /// Retries made since the client was created, and how often the breaker opened.
    pub fn counters(&self) -> (u64, u64) {
        let opened = self.breaker_lock().opened_total();
        (self.retries.load(Ordering::Relaxed), opened)
    }

    /// Send a request and wait for the answer's headers, retrying what is worth retrying:
    /// no answer, a timeout, 408, 429 and 5xx. The last answer is returned as it is, so a
    /// caller passes a provider's 429 (with its `Retry-After`) on when retries ran out.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        headers: &[(String, String)],
    ) -> CoreResult<Answer> {
        let method = Method::from_str(method)
            .map_err(|_| CoreError::InvalidArgument(format!("bad HTTP method {method:?}")))?;
        let url = format!("{}{}", self.config.base_url, path);
        let extra = header_map(headers)?;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut probe = ProbeSlot {
                client: self,
                held: self.admit(&url)?,
            };
            let request = self
                .http
                .request(method.clone(), &url)
                .headers(extra.clone())
                .body(body.clone())
                .send();
            let outcome = tokio::time::timeout(self.config.response_timeout, request).await;
            let was_probe = probe.held;
            probe.held = false; // the outcome is recorded below
            let error = match outcome {
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    self.record_status(status, was_probe);
                    if retryable_status(status) {
                        let asked = response
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, SystemTime::now()));
                        if self.wait_before_retry(attempt, asked).await {
                            continue;
                        }
                    }
                    return Ok(self.answer(response, attempt, url));
                }
                Ok(Err(err)) => CoreError::UpstreamConnect {
                    url: url.clone(),
                    reason: describe(&err),
                },
                Err(_) => CoreError::UpstreamTimeout {
                    url: url.clone(),
                    phase: "waiting for the response",
                    seconds: self.config.response_timeout.as_secs_f64(),
                },
            };
            self.breaker_lock().on_failure(Instant::now(), was_probe);
            if !self.wait_before_retry(attempt, None).await {
                return Err(error);
            }
        }
    }

    /// Whether the breaker lets this attempt out, and whether it is the half-open probe.
    fn admit(&self, url: &str) -> CoreResult<bool> {
        let mut breaker = self.breaker_lock();
        let now = Instant::now();
        let probe = breaker.state(now) == BreakerState::HalfOpen;
        breaker
            .admit(now)
            .map(|()| probe)
            .map_err(|wait| CoreError::CircuitOpen {
                url: url.to_owned(),
                retry_after_s: wait.as_secs_f64().max(0.001),
            })
    }

    fn record_status(&self, status: u16, probe: bool) {
        let mut breaker = self.breaker_lock();
        match status {
            500.. => breaker.on_failure(Instant::now(), probe),
            408 | 429 => breaker.on_neutral(probe),
            _ => breaker.on_success(),
        }
    }

    async fn wait_before_retry(&self, attempt: u32, asked: Option<Duration>) -> bool {
        match self.config.retry.delay(attempt, asked, fastrand::f64()) {
            Some(delay) => {
                self.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        }
    }

    fn answer(&self, response: Response, attempts: u32, url: String) -> Answer {
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), text)
            })
            .collect();
        Answer {
            status: response.status().as_u16(),
            headers,
            attempts,
            body: BodyStream {
                response: Some(response),
                read_timeout: self.config.read_timeout,
                url,
                pending: None,
            },
        }
    }

    fn breaker_lock(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        // A panic while holding it cannot leave the state half-written: recover it.
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A half-open probe in flight. If its call is dropped before the outcome is recorded (the
/// asyncio task awaiting it was cancelled), the slot is given back: otherwise the breaker
/// would stay half-open, refusing every call, for good.
struct ProbeSlot<'a> {
    client: &'a UpstreamClient,
    held: bool,
}

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.client.breaker_lock().on_neutral(true);
        }
    }
}

fn header_map(pairs: &[(String, String)]) -> CoreResult<HeaderMap> {
    let mut map = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        let name = HeaderName::from_str(name)
            .map_err(|_| CoreError::InvalidArgument(format!("bad header name {name:?}")))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| CoreError::InvalidArgument(format!("bad value for header {name}")))?;
        if name == reqwest::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        map.insert(name, value);
    }
    Ok(map)
}

/// reqwest's error with its causes, which say what actually went wrong.
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
