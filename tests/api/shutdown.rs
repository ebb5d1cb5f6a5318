//! The orderly stop with plain HTTP connections open: an idle keep-alive
//! connection (a proxy's, a load balancer's) and one that has not sent a
//! request yet are closed when the stop begins, not waited for until their
//! keep-alive or request timeout (5 s) runs out.

use crate::helpers::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[actix_web::test]
async fn idle_http_connections_do_not_hold_the_exit() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let mut node = Node::start_with(&db, &["--shutdown-grace", "10"]);
    let mut idle = TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 512];
    let n = tokio::time::timeout(WAIT, idle.read(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    let _silent = TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let signalled = Instant::now();
    let exit = loop {
        if let Some(status) = node.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "herald did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        took < Duration::from_secs(3),
        "herald took {took:?} to exit with two idle HTTP connections open"
    );
    let closed = tokio::time::timeout(WAIT, idle.read(&mut answer))
        .await
        .expect("closed in time");
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "the idle connection was closed"
    );
}
