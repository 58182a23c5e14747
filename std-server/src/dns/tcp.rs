//! DNS over TCP (RFC 7766): every message is preceded by its length in two bytes, and
//! a connection may carry many queries, answered in order. At most
//! [`MAX_CONNECTIONS`] connections are served at once, an eighth of them from one
//! source (see [`accept`](crate::accept));
//! one that sends no whole query within [`IDLE_TIMEOUT`] of being taken or of its
//! previous answer, or does not take an answer within it, is closed.
//!
//! Queries are answered by the same handler as over UDP, without the UDP size limit
//! or byte budgets. A query that does not parse gets `FORMERR` when its header does,
//! and the connection is closed when not even that parses; a message that is itself a
//! response is not answered (as over UDP).

use super::Handler;
use hickory_proto::op::{Header, Message, MessageType, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_proto::xfer::Protocol;
use hickory_server::authority::{MessageRequest, MessageResponse};
use hickory_server::proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest a connection may take to send a whole query, or to take its answer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves DNS over TCP on `listener` until the process stops.
pub(super) async fn serve(listener: TcpListener, handler: Arc<Handler>) {
    // Past its source's share a connection is closed without an answer.
    crate::accept::serve_bounded(
        listener,
        MAX_CONNECTIONS,
        b"",
        "dns",
        move |stream, peer| {
            let handler = handler.clone();
            async move {
                if let Err(e) = connection(stream, peer, &handler).await {
                    tracing::debug!(%peer, error = %e, "dns: TCP connection ended");
                }
            }
        },
    )
    .await
}

/// Answers the queries of one connection until it closes, idles or sends garbage.
async fn connection(mut stream: TcpStream, peer: SocketAddr, handler: &Handler) -> io::Result<()> {
    let mut query = Vec::new();
    loop {
        let Ok(read) = timeout(IDLE_TIMEOUT, read_message(&mut stream, &mut query)).await else {
            return Ok(());
        };
        if !read? {
            return Ok(());
        }
        let answer = match MessageRequest::from_bytes(&query) {
            Ok(request) if request.message_type() == MessageType::Response => continue,
            Ok(request) => answer(handler, Request::new(request, peer, Protocol::Tcp)).await?,
            Err(e) => {
                let Ok(header) = Header::read(&mut BinDecoder::new(&query)) else {
                    return Err(io::Error::other(format!("not a DNS message: {e}")));
                };
                Message::error_msg(header.id(), header.op_code(), ResponseCode::FormErr)
                    .to_vec()
                    .map_err(io::Error::other)?
            }
        };
        let len = u16::try_from(answer.len()).map_err(io::Error::other)?;
        let write = async {
            stream.write_all(&len.to_be_bytes()).await?;
            stream.write_all(&answer).await
        };
        timeout(IDLE_TIMEOUT, write)
            .await
            .map_err(|_| io::Error::other("the answer was not taken"))??;
    }
}

/// Reads one length-prefixed message into `message`; false when the connection closed
/// before one began.
async fn read_message(stream: &mut TcpStream, message: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    message.resize(usize::from(u16::from_be_bytes(len)), 0);
    stream.read_exact(message).await?;
    Ok(true)
}

/// The handler's answer to `request`, encoded.
async fn answer(handler: &Handler, request: Request) -> io::Result<Vec<u8>> {
    let collected = Collect::default();
    handler.handle_request(&request, collected.clone()).await;
    let bytes = std::mem::take(&mut *collected.0.lock().unwrap_or_else(|e| e.into_inner()));
    if bytes.is_empty() {
        return Err(io::Error::other("no answer was made"));
    }
    Ok(bytes)
}

/// Keeps the encoded answer a handler sends.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<u8>>>);

#[async_trait::async_trait]
impl ResponseHandler for Collect {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> io::Result<ResponseInfo> {
        let mut bytes = Vec::with_capacity(512);
        let info = response
            .destructive_emit(&mut BinEncoder::new(&mut bytes))
            .map_err(io::Error::other)?;
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = bytes;
        Ok(info)
    }
}
