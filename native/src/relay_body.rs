//! The body of an `HttpFront` answer: whole, or relayed from an upstream frame by frame.
//!
//! A relayed body is fed by a task (`pump`) that reads the upstream and sends each chunk as it
//! comes, so a stream of tokens reaches the client as the model's pod writes it. The task ends
//! with the first of: the upstream's end, its error, or the client's leaving (hyper drops the
//! body, the channel closes), and then closes the upstream connection rather than pooling it,
//! which is what cancels the request on the pod.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use modelkube_core::render::{ErrorBody, Renderer};
use modelkube_core::upstream::BodyStream;
use tokio::sync::mpsc;

/// Chunks in flight between the upstream and a slow client; the upstream waits beyond them.
const IN_FLIGHT: usize = 32;

/// The upstream broke off a body that is not an event stream: the connection to the client is
/// cut too, as its headers (and maybe part of the body) went out already.
#[derive(Debug)]
pub struct Cut(String);

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the upstream broke off its answer: {}", self.0)
    }
}

impl std::error::Error for Cut {}

pub enum AnswerBody {
    Whole(Option<Bytes>),
    Relayed(mpsc::Receiver<Result<Bytes, Cut>>),
}

impl AnswerBody {
    pub fn whole(bytes: Bytes) -> Self {
        AnswerBody::Whole(Some(bytes))
    }

    /// A body fed by `pump`, which the caller spawns with the sender.
    pub fn relayed() -> (Self, mpsc::Sender<Result<Bytes, Cut>>) {
        let (sender, receiver) = mpsc::channel(IN_FLIGHT);
        (AnswerBody::Relayed(receiver), sender)
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        match self.get_mut() {
            AnswerBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            AnswerBody::Relayed(chunks) => chunks
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, AnswerBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AnswerBody::Whole(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            AnswerBody::Whole(None) => SizeHint::with_exact(0),
            AnswerBody::Relayed(_) => SizeHint::default(),
        }
    }
}

/// Sends `upstream`'s chunks to `client` until one side ends. An event stream that breaks off
/// ends with OpenAI's error frame, as the gateway's own streams do; another body is cut.
pub async fn pump(
    mut upstream: BodyStream,
    client: mpsc::Sender<Result<Bytes, Cut>>,
    event_stream: bool,
) {
    loop {
        let next = tokio::select! {
            () = client.closed() => break,
            next = upstream.next() => next,
        };
        let chunk = match next {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => return,
            Err(e) if event_stream => {
                let message = format!("the model's pod stopped mid-answer: {e}");
                let mut frame = Vec::with_capacity(128 + message.len());
                let body = ErrorBody {
                    message: &message,
                    kind: "server_error",
                    param: None,
                    code: Some("upstream_unreachable"),
                };
                Renderer::error(body, &mut frame);
                let _ = client.send(Ok(Bytes::from(frame))).await;
                return;
            }
            Err(e) => {
                let _ = client.send(Err(Cut(e.to_string()))).await;
                return;
            }
        };
        if client.send(chunk).await.is_err() {
            break;
        }
    }
    upstream.close();
}
