//! Browser collection end to end: a real headless Chromium loads a page from another origin
//! that sends a beacon, a CORS `fetch` (reading the answer) and a tracking pixel to a real
//! `sluice` whose pipeline parses the user agent; a page on an origin that is not allowed gets
//! nothing stored.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    curl, free_port, read_lines, sluice, wait_until, wait_with_timeout, write_file,
};

/// Debian's Chromium (`apt-get install chromium`).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The page: a beacon, then a `fetch` whose answer it reads, then a pixel; it writes what it
/// saw into `#out` for `--dump-dom`.
fn page(collector: &str) -> String {
    format!(
        r#"<!doctype html><html><body><div id="out">pending</div><script>
const collector = '{collector}';
const out = document.getElementById('out');
const seen = {{}};
function show() {{ out.textContent = 'fetch=' + seen.fetch + ' pixel=' + seen.pixel; }}
navigator.sendBeacon(collector + '/events',
    JSON.stringify({{event: 'beacon', from: location.origin}}));
fetch(collector + '/events', {{
    method: 'POST',
    headers: {{'Content-Type': 'application/json'}},
    body: JSON.stringify({{event: 'fetch', from: location.origin}}),
}}).then(r => r.json()).then(answer => {{ seen.fetch = 'accepted:' + answer.accepted; }})
  .catch(() => {{ seen.fetch = 'failed'; }})
  .finally(() => {{
    const img = new Image();
    img.onload = () => {{ seen.pixel = 'loaded:' + img.naturalWidth + 'x' + img.naturalHeight; show(); }};
    img.onerror = () => {{ seen.pixel = 'refused'; show(); }};
    img.src = collector + '/p.gif?event=pixel&from=' + encodeURIComponent(location.origin);
  }});
</script></body></html>"#
    )
}

/// Serves `html` to every request on `listener` (a page server on its own origin).
fn serve_page(listener: TcpListener, html: String) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: \
                 {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
}

/// Loads `url` in headless Chromium and returns the DOM once the page settled.
fn chromium_dom(url: &str, profile: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "this test needs Debian's chromium (apt-get install -y chromium)"
    );
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let output = wait_with_timeout(output, Duration::from_secs(60));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stop(child: Child) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let output = wait_with_timeout(child, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "sluice failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn stored(path: &Path) -> Vec<Value> {
    read_lines(path)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn beacon_fetch_and_pixel_from_a_real_browser_arrive_once_and_other_origins_keep_nothing() {
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let collector = format!("http://127.0.0.1:{port}");
    let shop = TcpListener::bind("127.0.0.1:0").unwrap();
    let shop_origin = format!("http://127.0.0.1:{}", shop.local_addr().unwrap().port());
    let evil = TcpListener::bind("127.0.0.1:0").unwrap();
    let evil_origin = format!("http://127.0.0.1:{}", evil.local_addr().unwrap().port());
    serve_page(shop, page(&collector));
    serve_page(evil, page(&collector));

    write_file(
        dir.path(),
        "web.toml",
        &format!(
            r#"data_dir = "state"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
path = "/events"
topic = "raw"
decoding = "json"
pixel_path = "/p.gif"
copy_headers = ["user-agent"]
cors = {{ allowed_origins = ["{shop_origin}"] }}

[pipelines.enrich]
input = "raw"
output = "enriched"
steps = [{{ type = "user_agent", field = "user_agent" }}]

[sinks.out]
type = "file"
input = "enriched"
path = "out.ndjson"
"#
        ),
    );
    let agent = sluice(dir.path())
        .args(["run", "-c", "web.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = format!("{collector}/health");
    assert!(
        wait_until(Duration::from_secs(20), || curl(&[&health]).0 == 200),
        "sluice did not come up"
    );
    let out = dir.path().join("out.ndjson");

    let dom = chromium_dom(&format!("{shop_origin}/"), &dir.path().join("profile-shop"));
    assert!(
        dom.contains("fetch=accepted:1 pixel=loaded:1x1"),
        "the page could not read the answers: {dom}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || stored(&out).len() >= 3),
        "three events expected, stored: {:?}",
        stored(&out)
    );

    let dom = chromium_dom(&format!("{evil_origin}/"), &dir.path().join("profile-evil"));
    assert!(
        dom.contains("fetch=failed pixel=refused"),
        "a page on another origin must be refused: {dom}"
    );
    // Give anything that slipped through time to land before looking.
    std::thread::sleep(Duration::from_secs(1));
    stop(agent);

    let events = stored(&out);
    let mut kinds: Vec<&str> = events
        .iter()
        .map(|event| event["event"].as_str().unwrap_or("?"))
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["beacon", "fetch", "pixel"], "{events:#?}");
    for event in &events {
        assert_eq!(event["from"], shop_origin.as_str(), "{event}");
        let agent = event["user_agent"].as_str().unwrap_or_default();
        assert!(agent.contains("HeadlessChrome"), "{event}");
        assert_eq!(event["os"], "Linux", "{event}");
        assert_eq!(event["device"], "desktop", "{event}");
        assert_eq!(event["remote_addr"], "127.0.0.1", "{event}");
    }
    let pixel = events
        .iter()
        .find(|event| event["event"] == "pixel")
        .unwrap();
    assert_eq!(pixel["path"], "/p.gif");
}
