//! `HttpFront`: an HTTP/1.1 server on the core's tokio runtime whose POSTs Python routes
//! synchronously, on the tokio thread that read them, and whose answers the core's client
//! relays without the event loop.
//!
//! The first layer of the gateway's Rust front (issue 19): a request through uvicorn and the
//! native client wakes the event loop twice and crosses into tokio and back, ~0.5 ms of added
//! latency on this machine; asking Python once per request from the tokio thread removes the
//! event loop from the path. `bench.gateway --latency-only` measures this layer beside
//! uvicorn's pass-through (`bench/gateway/floor.py --server front`). Not here yet, and needed
//! before the gateway can stand on it: a fallback to the ASGI app for other routes and for
//! requests that must wait (holds, admission), the request's headers for the router (keys),
//! and wiring into `modelkube gateway`.
//!
//! The router is called with the GIL held (attached, on a free-threaded build), holding the
//! `Gate` when one is given, and may answer with:
//! - an `UpstreamClient`: the same path and body are sent through it and its answer relayed,
//!   status, content type and body, chunk by chunk as they come (`relay_body`);
//! - `(UpstreamClient, done)`: the same, and `done()` is called once when the relay is over
//!   however it ends (the upstream's end or error, the client's leaving), holding the gate: the
//!   router's share of a pod's load is given back there;
//! - `(status, body)`: answered as is.
//!
//! What it raises is a 500 with OpenAI's error body, the exception going to
//! `sys.unraisablehook`; the server goes on.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use modelkube_core::upstream::UpstreamClient as CoreClient;
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

/// What the router decided for one request.
enum Routed {
    Relay(Arc<CoreClient>, Option<Done>),
    Answer(u16, Bytes),
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
    #[pyo3(signature = (host, port, router, gate = None))]
    fn new(
        py: Python<'_>,
        host: &str,
        port: u16,
        router: Py<PyAny>,
        gate: Option<Py<Gate>>,
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
}

impl Router {
    /// The router's decision, taken holding the gate when there is one.
    fn decide(&self, path: &str, body: &Bytes) -> Routed {
        with_gate(self.gate.as_deref(), |py| {
            route(py, &self.call, path, body, self.gate.as_ref())
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

/// The router's `done`, called once when its relay is over, whichever way: dropped with the
/// request's future when the client leaves before the upstream's headers came.
struct Done {
    call: Py<PyAny>,
    gate: Option<Arc<Py<Gate>>>,
}

impl Drop for Done {
    fn drop(&mut self) {
        with_gate(self.gate.as_deref(), |py| {
            if let Err(e) = self.call.call0(py) {
                e.write_unraisable(py, Some(self.call.bind(py)));
            }
        });
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

async fn handle(request: Request<Incoming>, router: Arc<Router>) -> Result<Answer, Infallible> {
    if request.method() != Method::POST {
        return Ok(error(
            405,
            "Only POST is served here.",
            "invalid_request_error",
        ));
    }
    let path = request.uri().path().to_owned();
    let Ok(body) = request
        .into_body()
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
    let (client, done) = match router.decide(&path, &body) {
        Routed::Relay(client, done) => (client, done),
        Routed::Answer(status, body) => return Ok(json(status, body)),
        Routed::Failed => {
            let message = "The server had an error while processing your request.";
            return Ok(error(500, message, "server_error"));
        }
    };
    let headers = [("content-type".to_owned(), "application/json".to_owned())];
    let upstream = match client.send("POST", &path, body, &headers).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let message = format!("The upstream could not be reached: {e}");
            return Ok(error(502, &message, "server_error"));
        }
    };
    let content_type = upstream
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, value)| HeaderValue::from_str(value).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    let event_stream = content_type.as_bytes().starts_with(b"text/event-stream");
    let (body, chunks) = AnswerBody::relayed();
    tokio::spawn(async move {
        pump(upstream.body, chunks, event_stream).await;
        drop(done);
    });
    let mut answer = Response::new(body);
    *answer.status_mut() = StatusCode::from_u16(upstream.status).unwrap_or(StatusCode::BAD_GATEWAY);
    answer.headers_mut().insert(CONTENT_TYPE, content_type);
    Ok(answer)
}

fn route(
    py: Python<'_>,
    router: &Py<PyAny>,
    path: &str,
    body: &Bytes,
    gate: Option<&Arc<Py<Gate>>>,
) -> Routed {
    let decided = router
        .call1(py, (path, PyBytes::new(py, body)))
        .and_then(|decided| {
            if let Ok(client) = decided.extract::<PyRef<'_, UpstreamClient>>(py) {
                return Ok(Routed::Relay(client.core(), None));
            }
            if let Ok((client, call)) =
                decided.extract::<(PyRef<'_, UpstreamClient>, Py<PyAny>)>(py)
            {
                let gate = gate.cloned();
                return Ok(Routed::Relay(client.core(), Some(Done { call, gate })));
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
