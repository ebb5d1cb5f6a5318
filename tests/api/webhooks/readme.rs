//! The README's Python receiver, run as written, verifies a real herald
//! event with the Standard Webhooks library.

use super::receiver::SECRET;
use crate::helpers::spawn_app_with;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The README's ```python block that starts with `# receiver.py`.
fn readme_receiver() -> String {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let start = readme
        .find("```python\n# receiver.py")
        .expect("the README shows receiver.py");
    let code = &readme[start + "```python\n".len()..];
    code[..code.find("```").expect("the block ends")].to_string()
}

#[actix_web::test]
async fn the_readme_python_receiver_verifies_a_real_event() {
    let probe = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipped: python3 with `standardwebhooks` is not installed (pip install standardwebhooks)");
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", &readme_receiver()])
        .env("HERALD_WEBHOOK_SECRET", SECRET)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listening = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the receiver starts");
    let port = listening
        .strip_prefix("listening on ")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("unexpected first line {listening:?}"));
    let url = format!("http://127.0.0.1:{port}/hooks");
    let app = spawn_app_with(move |s| {
        s.webhook_urls = vec![url];
        s.webhook_secret = Some(SECRET.into());
    })
    .await;
    let id = app.announce_all("Verified in Python").await["id"]
        .as_i64()
        .expect("id");
    // The line comes from the receiver's verified branch only.
    let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(15)).ok())
        .await
        .expect("reader")
        .expect("the receiver printed a verified event");
    let (kind, data) = line.split_once(' ').expect("type and data");
    assert_eq!(kind, "announcement.published");
    let data: serde_json::Value = serde_json::from_str(data).expect("data is JSON");
    assert_eq!(data["id"], id);
    assert_eq!(data["title"], "Verified in Python");
    let deadline = tokio::time::Instant::now() + crate::helpers::WAIT;
    loop {
        let delivered: serde_json::Value = app
            .admin_get("/api/webhooks/deliveries?status=delivered")
            .await
            .json()
            .await
            .expect("json");
        if delivered["items"][0]["last_status"] == 204 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{delivered}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
