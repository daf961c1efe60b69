//! `HttpFront`: an HTTP/1.1 server on the core's tokio runtime whose POSTs Python routes
//! synchronously, on the tokio thread that read them, and whose answers the core's client
//! relays without the event loop.
//!
//! The first layer of the gateway's Rust front (issue 19): a request through uvicorn and the
//! native client wakes the event loop twice and crosses into tokio and back, ~0.5 ms of added
//! latency on this machine; asking Python once per request from the tokio thread removes the
//! event loop from the path. `bench.gateway --latency-only` measures this layer beside
//! uvicorn's pass-through (`bench/gateway/floor.py --server front`). `modelkube gateway
//! --front native` serves on it (`modelkube_serving.gateway.front`): requests the gateway can
//! route at once are relayed from here, the rest go to its ASGI app on a loopback port.
//!
//! The router is called as `router(method, path, authorization, body)` (the path without its
//! query; the `Authorization` header or None) with the GIL held (attached, on a free-threaded
//! build), holding the `Gate` when one is given, and may answer with:
//! - an `UpstreamClient`: the request (method, path and query, headers but the hop-by-hop ones,
//!   body) is sent through it and its answer relayed, status, headers and body, chunk by chunk
//!   as they come (`relay_body`);
//! - `(UpstreamClient, done)`: the same, and `done(status)` is called once when the relay is
//!   over however it ends (the upstream's end or error, the client's leaving: 499 when that was
//!   before the upstream answered), holding the gate, with the status the client was sent: the
//!   router's share of a pod's load is given back there;
//! - `(status, body)`: answered as is;
//! - `None`: the request is relayed to the `fallback` client, whole (404 without one).
//!
//! With a fallback, a routed request whose upstream cannot be reached, or answers 503 (a pod
//! draining), goes to the fallback too, after its `done(None)` (None: this relay answered no
//! one), with the try it had in `x-modelkube-tried: <upstream host:port> <refused|gone|timeout|
//! draining>`, so that the fallback's own routing retries it as if it had made that try itself.
//! The same header from a client is dropped: only the front says what it tried. Once the front
//! is closed, every answer it starts says `connection: close`, as uvicorn's do once it stops,
//! so that a client's next request goes to another gateway replica.
//! What the router raises is a 500 with OpenAI's error body, the exception going to
//! `sys.unraisablehook`; the server goes on.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use modelkube_core::upstream::UpstreamClient as CoreClient;
use modelkube_core::CoreError;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_async_runtimes::tokio::get_runtime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gate::Gate;
use crate::gil::without_gil;
use crate::relay_body::{pump, AnswerBody};
use crate::upstream::UpstreamClient;

type Answer = Response<AnswerBody>;
type Headers = Vec<(String, String)>;

/// The fallback's header for the try a routed request had before it was passed on.
const TRIED: &str = "x-modelkube-tried";

/// Headers that belong to one hop (RFC 9110 7.6.1), that the client recomputes, or that only
/// the front may set.
const NOT_RELAYED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "date",
    TRIED,
];

/// What the router decided for one request.
enum Routed {
    Relay(Arc<CoreClient>, Option<Done>),
    Answer(u16, Bytes),
    Fallback,
    Failed,
}

/// Shared: the port is immutable and the stop signal sits behind a lock.
#[pyclass(frozen, module = "modelkube_native._native")]
pub struct HttpFront {
    #[pyo3(get)]
    port: u16,
    stop: Mutex<Option<watch::Sender<bool>>>,
}

#[pymethods]
impl HttpFront {
    /// Listens on `host:port` (0: a free port, read back from `.port`) at once.
    #[new]
    #[pyo3(signature = (host, port, router, gate = None, fallback = None))]
    fn new(
        py: Python<'_>,
        host: &str,
        port: u16,
        router: Py<PyAny>,
        gate: Option<Py<Gate>>,
        fallback: Option<PyRef<'_, UpstreamClient>>,
    ) -> PyResult<Self> {
        let runtime = get_runtime();
        let address = (host.to_owned(), port);
        let listener = without_gil(py, || runtime.block_on(TcpListener::bind(address)))
            .map_err(|e| PyOSError::new_err(format!("cannot listen on {host}:{port}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| PyOSError::new_err(e.to_string()))?
            .port();
        let (stop, stopped) = watch::channel(false);
        let router = Arc::new(Router {
            call: router,
            gate: gate.map(Arc::new),
            fallback: fallback.map(|f| f.core()),
            stopped: stopped.clone(),
        });
        runtime.spawn(serve(listener, router, stopped));
        Ok(HttpFront {
            port,
            stop: Mutex::new(Some(stop)),
        })
    }

    /// Stops listening; connections open now end with the request they are serving.
    fn close(&self) {
        let stop = self.stop.lock().map(|mut s| s.take()).unwrap_or_default();
        if let Some(stop) = stop {
            let _ = stop.send(true);
        }
    }
}

impl Drop for HttpFront {
    fn drop(&mut self) {
        self.close();
    }
}

struct Router {
    call: Py<PyAny>,
    gate: Option<Arc<Py<Gate>>>,
    fallback: Option<Arc<CoreClient>>,
    /// True once the front is closed.
    stopped: watch::Receiver<bool>,
}

impl Router {
    /// The router's decision, taken holding the gate when there is one.
    fn decide(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &Bytes,
    ) -> Routed {
        with_gate(self.gate.as_deref(), |py| {
            let args = (method, path, authorization, PyBytes::new(py, body));
            route(py, &self.call, args, self.gate.as_ref())
        })
    }
}

/// Calls `f` attached to Python, holding `gate` if there is one. The tokio thread blocks
/// meanwhile, as it does for the GIL: the loop's turns are short.
fn with_gate<R>(gate: Option<&Py<Gate>>, f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    let Some(gate) = gate else {
        return Python::attach(f);
    };
    let gate = gate.get();
    gate.enter();
    let result = Python::attach(f);
    gate.leave();
    result
}

/// The client left before the upstream answered (nginx's code for it).
const CLIENT_LEFT: u16 = 499;

/// The router's `done`, called once when its relay is over, whichever way: dropped with the
/// request's future when the client leaves before the upstream's headers came.
struct Done {
    call: Option<Py<PyAny>>,
    gate: Option<Arc<Py<Gate>>>,
}

impl Done {
    /// `status`: what the client was sent; None when the request was passed to the fallback.
    fn finish(mut self, status: Option<u16>) {
        self.call_with(status);
    }

    fn call_with(&mut self, status: Option<u16>) {
        let Some(call) = self.call.take() else { return };
        with_gate(self.gate.as_deref(), |py| {
            if let Err(e) = call.call1(py, (status,)) {
                e.write_unraisable(py, Some(call.bind(py)));
            }
        });
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        self.call_with(Some(CLIENT_LEFT));
    }
}

async fn serve(listener: TcpListener, router: Arc<Router>, mut stopped: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let router = Arc::clone(&router);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, Arc::clone(&router)));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopped.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// One request as it goes upstream.
struct Outgoing {
    method: String,
    target: String,
    headers: Headers,
    body: Bytes,
}

async fn handle(request: Request<Incoming>, router: Arc<Router>) -> Result<Answer, Infallible> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
    else {
        return Ok(error(
            400,
            "The request body could not be read.",
            "invalid_request_error",
        ));
    };
    let path = parts.uri.path();
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let decision = router.decide(parts.method.as_str(), path, authorization, &body);
    let outgoing = Outgoing {
        method: parts.method.as_str().to_owned(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.to_owned(), ToString::to_string),
        headers: relayed_request_headers(&parts.headers),
        body,
    };
    let fallback = router.fallback.as_ref();
    let mut answer = match decision {
        Routed::Relay(client, done) => {
            match relay(&client, &outgoing, done, fallback.is_some()).await {
                Ok(answer) => answer,
                Err(passed) => {
                    let mut outgoing = outgoing;
                    outgoing
                        .headers
                        .push((TRIED.to_owned(), passed.tried(&client)));
                    relay_to_fallback(fallback, &outgoing).await
                }
            }
        }
        Routed::Fallback => relay_to_fallback(fallback, &outgoing).await,
        Routed::Answer(status, body) => json(status, body),
        Routed::Failed => error(
            500,
            "The server had an error while processing your request.",
            "server_error",
        ),
    };
    if *router.stopped.borrow() {
        // hyper says the same once its graceful shutdown reaches this connection, which may
        // be after an answer that was waiting (a request held until the gateway stopped).
        answer
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(answer)
}

async fn relay_to_fallback(fallback: Option<&Arc<CoreClient>>, outgoing: &Outgoing) -> Answer {
    let Some(fallback) = fallback else {
        return error(
            404,
            "Nothing is served at this path.",
            "invalid_request_error",
        );
    };
    match relay(fallback, outgoing, None, false).await {
        Ok(answer) => answer,
        Err(passed) => passed.answer,
    }
}

/// A relay passed on for the fallback to take the request: why, and the answer it would
/// have had.
struct Passed {
    reason: &'static str,
    answer: Answer,
}

impl Passed {
    /// The `x-modelkube-tried` value: the upstream's `host:port` and the reason.
    fn tried(&self, client: &CoreClient) -> String {
        let base = client.base_url();
        let authority = base.split_once("://").map_or(base, |(_, rest)| rest);
        format!("{} {}", authority.trim_end_matches('/'), self.reason)
    }
}

/// Why a request never reached an upstream, in the words the gateway's retry metric uses.
fn unreached(error: &CoreError) -> &'static str {
    match error {
        CoreError::UpstreamTimeout { .. } => "timeout",
        CoreError::UpstreamConnect { reason, .. } if reason.to_lowercase().contains("refused") => {
            "refused"
        }
        _ => "gone",
    }
}

/// Sends `outgoing` through `client` and streams its answer back. With `may_pass`, an upstream
/// that cannot be reached or answers 503 is `Err`: `done` is called with None, and the
/// caller tries the fallback.
async fn relay(
    client: &Arc<CoreClient>,
    outgoing: &Outgoing,
    done: Option<Done>,
    may_pass: bool,
) -> Result<Answer, Passed> {
    let sent = client
        .send(
            &outgoing.method,
            &outgoing.target,
            outgoing.body.clone(),
            &outgoing.headers,
        )
        .await;
    let mut upstream = match sent {
        Ok(upstream) => upstream,
        Err(e) => {
            let message = format!("The upstream could not be reached: {e}");
            let answer = error(502, &message, "server_error");
            if may_pass {
                if let Some(done) = done {
                    done.finish(None);
                }
                let reason = unreached(&e);
                return Err(Passed { reason, answer });
            }
            if let Some(done) = done {
                done.finish(Some(502));
            }
            return Ok(answer);
        }
    };
    if may_pass && upstream.status == 503 {
        upstream.body.close();
        if let Some(done) = done {
            done.finish(None);
        }
        let answer = error(503, "draining", "server_error");
        return Err(Passed {
            reason: "draining",
            answer,
        });
    }
    let status = upstream.status;
    let headers = relayed_answer_headers(&upstream.headers);
    let event_stream = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (body, chunks) = AnswerBody::relayed();
    tokio::spawn(async move {
        pump(upstream.body, chunks, event_stream).await;
        if let Some(done) = done {
            // The body's end wakes the connection's task, often into this worker's next slot:
            // let it write the end first, so `done` (the gate, the GIL) is not in the client's
            // latency.
            tokio::task::yield_now().await;
            done.finish(Some(status));
        }
    });
    let mut answer = Response::new(body);
    *answer.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *answer.headers_mut() = headers;
    Ok(answer)
}

fn relayed_request_headers(headers: &HeaderMap) -> Headers {
    headers
        .iter()
        .filter(|(name, _)| !NOT_RELAYED.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

fn relayed_answer_headers(headers: &[(String, String)]) -> HeaderMap {
    let mut relayed = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if NOT_RELAYED.contains(&name.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            relayed.append(name, value);
        }
    }
    relayed
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    relayed
}

fn route(
    py: Python<'_>,
    router: &Py<PyAny>,
    args: (&str, &str, Option<&str>, Bound<'_, PyBytes>),
    gate: Option<&Arc<Py<Gate>>>,
) -> Routed {
    let decided = router.call1(py, args).and_then(|decided| {
        if decided.is_none(py) {
            return Ok(Routed::Fallback);
        }
        if let Ok(client) = decided.extract::<PyRef<'_, UpstreamClient>>(py) {
            return Ok(Routed::Relay(client.core(), None));
        }
        if let Ok((client, call)) = decided.extract::<(PyRef<'_, UpstreamClient>, Py<PyAny>)>(py) {
            let gate = gate.cloned();
            let done = Done {
                call: Some(call),
                gate,
            };
            return Ok(Routed::Relay(client.core(), Some(done)));
        }
        let (status, body) = decided.extract::<(u16, Vec<u8>)>(py)?;
        Ok(Routed::Answer(status, Bytes::from(body)))
    });
    decided.unwrap_or_else(|e| {
        e.write_unraisable(py, Some(router.bind(py)));
        Routed::Failed
    })
}

fn json(status: u16, body: Bytes) -> Answer {
    let mut answer = Response::new(AnswerBody::whole(body));
    *answer.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    answer
}

/// OpenAI's error body.
fn error(status: u16, message: &str, kind: &str) -> Answer {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": null}
    });
    json(status, Bytes::from(body.to_string()))
}
