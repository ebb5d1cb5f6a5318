//! Upgrade requests, served without the HTTP/1 dispatcher's buffers.
//!
//! actix-http's HTTP/1 dispatcher holds an 8 KiB read buffer and an 8 KiB
//! write buffer for a connection's whole life (`HW_BUFFER_SIZE` in
//! actix-http 3's `h1/dispatcher.rs`, with no setting to change it), which
//! was most of what an idle WebSocket cost (see docs/performance.md). A
//! request asking for an upgrade is handed here with its socket instead:
//! the dispatcher and both buffers are dropped, the request goes through
//! the same App (routes, middleware, extractors) with a payload read
//! straight from the socket, and the answer is written to the socket as it
//! is produced. Backpressure is unchanged: the next chunk of the answer is
//! asked for only once the last one was written.
//!
//! An answer other than `101 Switching Protocols` (a refused token, a
//! foreign origin, a rate limit) is written whole and the connection
//! closed.

use actix_codec::{Encoder, Framed, FramedParts};
use actix_http::body::{BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::h1::{Codec, Message};
use actix_http::{BoxedPayloadStream, ConnectionType, Payload, Request, Response, StatusCode};
use actix_service::{fn_factory, fn_service, Service, ServiceFactory};
use actix_web::dev::ServiceResponse;
use actix_web::rt::net::TcpStream;
use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use futures_util::Stream;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// What the dispatcher hands over: the request and the connection.
type Upgraded = (Request, Framed<TcpStream, Codec>);

/// How much one read takes from the socket. The buffer is on the stack for
/// the read only; an idle connection holds none.
const READ_CHUNK: usize = 4096;

/// How long the App may take to answer an upgrade request. A WebSocket
/// handshake answers at once (the catch-up runs after the 101); what takes
/// longer is a request that waits for a body read from the socket until
/// the client ends it, which a client could hold open forever: it gets
/// `408` and the connection is closed.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The upgrade service for one worker, serving requests with `app`.
pub fn service<F, B>(
    app: F,
) -> impl ServiceFactory<Upgraded, Config = (), Response = (), Error = actix_web::Error, InitError = ()>
where
    F: ServiceFactory<
            Request,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    F::Service: 'static,
    B: MessageBody + 'static,
{
    fn_factory(move || {
        let built = app.new_service(());
        async move {
            let app = Rc::new(built.await?);
            Ok::<_, ()>(fn_service(move |(req, framed): Upgraded| {
                // Boxed, so the dispatcher's per-connection state holds a
                // pointer rather than this future for every connection.
                let served: LocalBoxFuture<'static, Result<(), actix_web::Error>> =
                    Box::pin(serve(Rc::clone(&app), req, framed));
                served
            }))
        }
    })
}

/// Answers one upgrade request, then (if upgraded) carries the answer's
/// stream to the socket until either side ends it. Connection errors end
/// the connection quietly: they are the peer's doing, not herald's.
async fn serve<S, B>(
    app: Rc<S>,
    req: Request,
    framed: Framed<TcpStream, Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    // The handshake is boxed so its (large) state is freed once the
    // connection is upgraded; what stays is the small pump below.
    let upgraded = match Box::pin(handshake(app, req, framed)).await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "upgrade request ended before its answer was written");
            return Ok(());
        }
    };
    if let Some((write, body)) = upgraded {
        if let Err(error) = pump(write, body).await {
            tracing::debug!(%error, "upgraded connection ended");
        }
    }
    Ok(())
}

/// Runs the request through the App and writes the answer's head. Gives
/// back the socket's write half and the answer's stream once upgraded, or
/// `None` after writing a refusal whole.
async fn handshake<S, B>(
    app: Rc<S>,
    req: Request,
    framed: Framed<TcpStream, Codec>,
) -> io::Result<Option<(OwnedWriteHalf, BoxBody)>>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let FramedParts {
        io,
        mut codec,
        read_buf,
        ..
    } = framed.into_parts();
    // Bytes the client sent after its request (early frames) go first; the
    // dispatcher's buffers are dropped here.
    let early = (!read_buf.is_empty()).then(|| Bytes::copy_from_slice(&read_buf));
    drop(read_buf);
    let (read, mut write) = io.into_split();
    let payload: BoxedPayloadStream = Box::pin(SocketPayload {
        read,
        early,
        ended: false,
    });
    let (req, _) = req.replace_payload(Payload::from(payload));
    let answer: Response<BoxBody> = match tokio::time::timeout(ANSWER_WITHIN, app.call(req)).await {
        Ok(Ok(answer)) => Response::from(answer).map_into_boxed_body(),
        Ok(Err(error)) => Response::from(error),
        Err(_) => {
            tracing::debug!("upgrade request not answered in time; closing");
            Response::new(StatusCode::REQUEST_TIMEOUT)
        }
    };
    let (mut head, body) = answer.into_parts();
    let upgraded = head.status() == StatusCode::SWITCHING_PROTOCOLS;
    if !upgraded {
        head.head_mut().set_connection_type(ConnectionType::Close);
    }
    let mut out = BytesMut::new();
    codec.encode(Message::Item((head, body.size())), &mut out)?;
    if upgraded {
        write.write_all(&out).await?;
        return Ok(Some((write, body)));
    }
    let body = actix_web::body::to_bytes(body)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    codec.encode(Message::Chunk(Some(body)), &mut out)?;
    codec.encode(Message::Chunk(None), &mut out)?;
    write.write_all(&out).await?;
    write.shutdown().await?;
    Ok(None)
}

/// Writes the upgraded answer's chunks to the socket as they come, asking
/// for the next only when the last is written.
async fn pump(mut write: OwnedWriteHalf, mut body: BoxBody) -> io::Result<()> {
    while let Some(chunk) = poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await {
        let chunk = chunk.map_err(|e| io::Error::other(e.to_string()))?;
        write.write_all(&chunk).await?;
    }
    write.shutdown().await
}

/// The request's payload, read from the socket on demand.
struct SocketPayload {
    read: OwnedReadHalf,
    early: Option<Bytes>,
    ended: bool,
}

impl Stream for SocketPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(early) = this.early.take() {
            return Poll::Ready(Some(Ok(early)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        let read = ready!(Pin::new(&mut this.read).poll_read(cx, &mut buf));
        Poll::Ready(match read {
            Ok(()) if buf.filled().is_empty() => {
                this.ended = true;
                None
            }
            Ok(()) => Some(Ok(Bytes::copy_from_slice(buf.filled()))),
            Err(error) => {
                this.ended = true;
                Some(Err(PayloadError::Io(error)))
            }
        })
    }
}
