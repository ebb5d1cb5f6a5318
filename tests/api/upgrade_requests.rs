//! Requests that ask for an upgrade are served outside the HTTP/1
//! dispatcher, with a body read from the socket until the client ends it.
//! A request routed to a REST handler that waits for that body must not
//! hold its connection forever: it is answered 408 and closed.

use crate::helpers::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[actix_web::test]
async fn an_upgrade_request_whose_body_never_ends_gets_408_and_is_closed() {
    let app = spawn_app().await;
    let mut slow = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let head = format!(
        "POST /api/announcements HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"title\""
    );
    slow.write_all(head.as_bytes())
        .await
        .expect("half a request");
    let mut answer = Vec::new();
    let within = herald::server::ANSWER_WITHIN + Duration::from_secs(5);
    let read = tokio::time::timeout(within, slow.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time");
    assert!(read.is_ok(), "{read:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}
