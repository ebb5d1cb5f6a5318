//! Another origin on loopback: a tiny static server, as an app's own site
//! would be, serving an empty page and its copy of herald.js (an app ships
//! the client from npm with its own bundle; it does not load it from herald).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

const PAGE: &str = "<!doctype html><meta charset=utf-8><title>app</title><body>the app</body>";

/// A static site on its own loopback port; it lives as long as the test
/// process (its thread blocks on accept).
pub struct AppOrigin {
    pub port: u16,
}

impl AppOrigin {
    pub fn start() -> AppOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let herald_js =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/static/herald.js"))
                .expect("static/herald.js");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // The rest of the request head.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let (status, kind, body) = match path {
                    "/herald.js" => ("200 OK", "text/javascript", herald_js.as_str()),
                    "/" | "/index.html" => ("200 OK", "text/html", PAGE),
                    _ => ("404 Not Found", "text/plain", "not found"),
                };
                let mut out = &stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        AppOrigin { port }
    }

    /// The origin, as a browser sends it in `Origin`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
