//! The end-to-end benchmark runner: runs the scenarios of `docs/DESIGN.md` ("Benchmarks") through
//! a real `sluice run` and reports MiB/s, events/s, CPU seconds (and CPU seconds per GiB) and peak
//! RSS.
//!
//! ```text
//! cargo run --release --example bench -- S1 S2 [--mb 256] [--runs 3] [--data DIR]
//! ```
//!
//! `NATS` needs `nats-server` (Debian's package): it runs one with JetStream on a free port, in
//! a store dir under the data directory, and measures two runs — `N1` the S1 nginx lines from a
//! file into a JetStream stream (one message per line, each acknowledged by the stream), `N2`
//! the same messages out of the stream through a durable consumer into a blackhole (each
//! acknowledged once the blackhole took it; the run is stopped once the consumer has nothing
//! pending and nothing unacknowledged).
//!
//! Input files are generated once with `sluice generate` (deterministic: the same bytes on every
//! machine) into the data directory (default `./bench-data`) and reused. Each scenario writes its config next to the data,
//! builds `sluice` in release mode, runs it `--runs` times and reports the median run. CPU time and
//! peak RSS come from the kernel's accounting of the child process (`wait4`).
#![allow(missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// The benchmark logs' nginx format as a generic regex (scenario S2R).
const NGINX_REGEX: &str = r#"^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<timestamp>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<request_time>\S+) (?P<request_id>\S+)$"#;

#[derive(Debug, Clone, Copy)]
struct Measurement {
    wall_secs: f64,
    cpu_secs: f64,
    peak_rss_mib: f64,
}

struct Options {
    scenarios: Vec<String>,
    mb: u64,
    runs: usize,
    data: PathBuf,
    /// The release `sluice` binary, once built.
    sluice: PathBuf,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        scenarios: Vec::new(),
        mb: 256,
        runs: 3,
        data: PathBuf::from("bench-data"),
        sluice: PathBuf::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--mb" => options.mb = value("--mb")?.parse().map_err(|e| format!("--mb: {e}"))?,
            "--runs" => {
                options.runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--data" => options.data = PathBuf::from(value("--data")?),
            "-h" | "--help" => {
                return Err(
                    "usage: bench [S1 S2 S2R S3 S4 S5 S5A F100 ROT K PIX NATS | all] [--mb N] [--runs N] \
                            [--data DIR]"
                        .into(),
                );
            }
            scenario => options.scenarios.push(scenario.to_uppercase()),
        }
    }
    if options.scenarios.is_empty() || options.scenarios.iter().any(|s| s == "ALL") {
        options.scenarios = [
            "S1", "S2", "S2R", "S3", "S4", "S5", "S5A", "F100", "ROT", "K", "PIX", "NATS",
        ]
        .map(String::from)
        .to_vec();
    }
    Ok(options)
}

fn main() -> ExitCode {
    let mut options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = fs::create_dir_all(&options.data) {
        eprintln!("cannot create {}: {error}", options.data.display());
        return ExitCode::from(1);
    }
    let binary = match build_sluice() {
        Ok(binary) => binary,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(1);
        }
    };
    options.sluice = binary.clone();
    println!(
        "{:<20} {:>10} {:>12} {:>9} {:>11} {:>10} {:>9}",
        "scenario", "MiB/s", "events/s", "wall s", "CPU s", "CPU s/GiB", "RSS MiB"
    );
    let mut failed = false;
    for scenario in &options.scenarios {
        match run_scenario(scenario, &options, &binary) {
            Ok(Some(line)) => println!("{line}"),
            Ok(None) => {}
            Err(message) => {
                failed = true;
                eprintln!("{scenario}: {message}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Builds the release binary and returns its path.
fn build_sluice() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "sluice"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build --release failed".into());
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let binary = Path::new(&target).join("release").join("sluice");
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!("{} not found after the build", binary.display()))
    }
}

/// Generates (once) a deterministic input file of `mb` MiB in `format`.
fn input(options: &Options, format: &str) -> Result<PathBuf, String> {
    let extension = if format == "nginx" { "log" } else { "ndjson" };
    let path = options
        .data
        .join(format!("{format}-{}mib.{extension}", options.mb));
    generate(
        options,
        format,
        &format!("--bytes={}MiB", options.mb),
        &path,
    )?;
    Ok(path)
}

/// Writes `path` with `sluice generate --format FORMAT LIMIT` unless it exists. The file appears
/// only when complete, so an interrupted run never leaves a short input to be reused.
fn generate(options: &Options, format: &str, limit: &str, path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    eprintln!("generating {} ({limit})…", path.display());
    let partial = path.with_extension("partial");
    let status = Command::new(&options.sluice)
        .args(["generate", "--format", format, limit, "-o"])
        .arg(&partial)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", options.sluice.display()))?;
    if !status.success() {
        let _ = fs::remove_file(&partial);
        return Err(format!("sluice generate failed ({status})"));
    }
    fs::rename(&partial, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Counts lines with a small buffer: reading the whole input into this process would show up
/// in the child's peak RSS, which Linux carries over a fork.
fn count_lines(path: &Path) -> Result<u64, String> {
    use std::io::Read;
    let mut file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if read == 0 {
            return Ok(lines);
        }
        lines += buffer[..read].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// What a scenario runs: its config, and the input whose size and lines are reported.
fn scenario_config(
    scenario: &str,
    options: &Options,
) -> Result<Option<(String, PathBuf, &'static str)>, String> {
    let data = fs::canonicalize(&options.data).map_err(|e| e.to_string())?;
    let out_dir = data.join("out");
    let _ = fs::remove_dir_all(&out_dir);
    let config = match scenario {
        "S1" => {
            let log = input(options, "nginx")?;
            (tail_to_null(&data, &log, "")?, log, "tail_to_null")
        }
        "S2" | "S2R" => {
            let log = input(options, "nginx")?;
            // S2 uses the hand-written preset; S2R the same fields through a generic regex.
            let parse = if scenario == "S2" {
                r#"{ type = "parse", format = "nginx_combined_timed", drop_raw = true }"#.to_owned()
            } else {
                format!(
                    "{{ type = \"parse\", format = \"regex\", drop_raw = true, pattern = '{NGINX_REGEX}', \
                     types = {{ status = \"int\", bytes = \"int\", request_time = \"float\" }} }}"
                )
            };
            let config = format!(
                r#"data_dir = "{data}/state"

[sources.access]
type = "file"
include = ["{log}"]
follow = false
topic = "raw"

[pipelines.errors_and_bots]
input = "raw"
output = "interesting"
workers = 2
steps = [
  {parse},
  {{ type = "filter", condition = 'status >= 400 or agent ~ "(?i)bot"' }},
]

[sinks.out]
type = "file"
input = "interesting"
path = "{out}/interesting.ndjson"
"#,
                data = data.display(),
                log = fs::canonicalize(&log).map_err(|e| e.to_string())?.display(),
                out = out_dir.display()
            );
            (
                config,
                log,
                if scenario == "S2" {
                    "regex_filter_file"
                } else {
                    "regex_filter_generic"
                },
            )
        }
        "S3" => {
            let events = input(options, "events")?;
            let config = format!(
                r#"data_dir = "{data}/state"

[sources.clicks]
type = "file"
include = ["{events}"]
follow = false
topic = "raw"

[pipelines.per_minute]
input = "raw"
output = "stats"
steps = [
  {{ type = "parse", format = "json", drop_raw = true }},
  {{ type = "aggregate", window = "1m", time_field = "ts", group_by = ["event", "page"],
     fields = {{ count = "count()" }} }},
]

[sinks.out]
type = "file"
input = "stats"
path = "{out}/stats.ndjson"
"#,
                data = data.display(),
                events = fs::canonicalize(&events)
                    .map_err(|e| e.to_string())?
                    .display(),
                out = out_dir.display()
            );
            (config, events, "json_aggregate")
        }
        "S5" | "S5A" => {
            // S1 through a disk topic: every event is written to a segment (and fsynced per the
            // policy) before the sink reads it back.
            let log = input(options, "nginx")?;
            let fsync = if scenario == "S5" {
                "interval"
            } else {
                "always"
            };
            let topic = format!("\n[topics.raw]\nstorage = \"disk\"\nfsync = \"{fsync}\"\n");
            (
                tail_to_null(&data, &log, &topic)?,
                log,
                if scenario == "S5" {
                    "tail_disk_topic_null"
                } else {
                    "tail_disk_topic_null_fsync_always"
                },
            )
        }
        other => return Err(format!("unknown scenario {other}")),
    };
    Ok(Some(config))
}

/// S1's config (file → topic `raw` → blackhole), with `extra` appended (S5 declares `raw` a disk
/// topic).
fn tail_to_null(data: &Path, log: &Path, extra: &str) -> Result<String, String> {
    Ok(format!(
        r#"data_dir = "{data}/state"

[sources.access]
type = "file"
include = ["{log}"]
follow = false
topic = "raw"

[sinks.null]
type = "blackhole"
input = "raw"
{extra}"#,
        data = data.display(),
        log = fs::canonicalize(log).map_err(|e| e.to_string())?.display()
    ))
}

fn run_scenario(
    scenario: &str,
    options: &Options,
    binary: &Path,
) -> Result<Option<String>, String> {
    if scenario == "S4" {
        return http_ingest(options, binary).map(Some);
    }
    if scenario == "PIX" {
        return pixel_ingest(options, binary).map(Some);
    }
    if scenario == "F100" {
        return many_files(options, binary).map(Some);
    }
    if scenario == "ROT" {
        return rotation_share(options, binary).map(Some);
    }
    if scenario == "K" {
        return kafka(options, binary).map(Some);
    }
    if scenario == "NATS" {
        return nats_round_trip(options, binary).map(Some);
    }
    let Some((config, input, label)) = scenario_config(scenario, options)? else {
        return Ok(None);
    };
    let config_path = options.data.join(format!("{scenario}.toml"));
    fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let input_bytes = fs::metadata(&input).map_err(|e| e.to_string())?.len();
    let lines = count_lines(&input)?;
    let mut runs = Vec::new();
    for _ in 0..options.runs.max(1) {
        let _ = fs::remove_dir_all(options.data.join("state"));
        runs.push(measure(binary, &config_path)?);
    }
    runs.sort_by(|a, b| a.wall_secs.total_cmp(&b.wall_secs));
    let median = runs[runs.len() / 2];
    let mib = input_bytes as f64 / (1024.0 * 1024.0);
    let gib = mib / 1024.0;
    Ok(Some(format!(
        "{:<20} {:>10.1} {:>12.0} {:>9.3} {:>11.3} {:>10.2} {:>9.1}",
        format!("{scenario} {label}"),
        mib / median.wall_secs,
        lines as f64 / median.wall_secs,
        median.wall_secs,
        median.cpu_secs,
        median.cpu_secs / gib,
        median.peak_rss_mib
    )))
}

/// Runs `sluice run -c config` once and measures it.
fn measure(binary: &Path, config: &Path) -> Result<Measurement, String> {
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["run", "--quiet", "--log", "warn", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid, exclusively borrowed out-parameters.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_secs = started.elapsed().as_secs_f64();
    if waited != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("sluice exited with status {status}"));
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measurement {
        wall_secs,
        cpu_secs: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}

/// S4's load: `wrk` for this long, with this many connections and threads.
const S4_SECONDS: u32 = 10;
const S4_CONNECTIONS: u32 = 16;
const S4_THREADS: u32 = 2;
/// Events per POST, and the events in S4's input (a small file: wrk's threads each load it).
const S4_BATCH: u64 = 100;
const S4_LINES: u64 = 20_000;

/// The wrk script of S4: POSTs the input's events as NDJSON batches of [`S4_BATCH`], each thread
/// cycling through all batches from a random start.
const S4_SCRIPT: &str = r#"-- S4 http_ingest: POST NDJSON batches of 100 events, cycling through the input file.
local batches = {}
local counter = 0
function init(args)
  local file = assert(io.open(args[1], "r"))
  local lines = {}
  for line in file:lines() do
    lines[#lines + 1] = line
    if #lines == 100 then
      batches[#batches + 1] = wrk.format("POST", nil,
        {["Content-Type"] = "application/x-ndjson"}, table.concat(lines, "\n") .. "\n")
      lines = {}
    end
  end
  file:close()
  counter = math.random(#batches)
end
function request()
  counter = counter + 1
  return batches[counter % #batches + 1]
end
"#;

/// What wrk reported.
#[derive(Debug, Clone, Copy)]
struct WrkReport {
    seconds: f64,
    requests: u64,
    non_2xx: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// S4 http_ingest: `wrk` POSTs NDJSON batches of 100 clickstream events over 16 connections to
/// `sluice run` (http_server → topic → blackhole) for [`S4_SECONDS`]; reports the median run by
/// events/s, with requests/s and wrk's p50/p99 latency on a second line. CPU seconds and peak RSS
/// are sluice's alone (wrk shares the machine, as a real load balancer would not).
fn http_ingest(options: &Options, binary: &Path) -> Result<String, String> {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|_| "wrk not found; install it (apt-get install -y wrk)".to_owned())?;
    let data = fs::canonicalize(&options.data).map_err(|e| e.to_string())?;
    let events = data.join(format!("events-{S4_LINES}lines.ndjson"));
    generate(options, "events", &format!("--lines={S4_LINES}"), &events)?;
    let batch_bytes = fs::metadata(&events).map_err(|e| e.to_string())?.len() as f64
        / (S4_LINES / S4_BATCH) as f64;
    let script = data.join("S4.lua");
    fs::write(&script, S4_SCRIPT).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let config = format!(
        r#"data_dir = "{data}/state"

[sources.ingest]
type = "http_server"
address = "127.0.0.1:{port}"
topic = "raw"

[sinks.null]
type = "blackhole"
input = "raw"
"#,
        data = data.display()
    );
    let config_path = data.join("S4.toml");
    fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    for _ in 0..options.runs.max(1) {
        let _ = fs::remove_dir_all(data.join("state"));
        runs.push(measure_server(binary, &config_path, port, |url| {
            run_wrk(url, &script, &events)
        })?);
    }
    let events_per_sec = |report: &WrkReport| {
        (report.requests - report.non_2xx) as f64 * S4_BATCH as f64 / report.seconds
    };
    runs.sort_by(|a, b| events_per_sec(&a.1).total_cmp(&events_per_sec(&b.1)));
    let (measurement, report) = runs[runs.len() / 2];
    let mib_per_sec = events_per_sec(&report) / S4_BATCH as f64 * batch_bytes / (1024.0 * 1024.0);
    let gib = mib_per_sec * report.seconds / 1024.0;
    Ok(format!(
        "{:<20} {:>10.1} {:>12.0} {:>9.3} {:>11.3} {:>10.2} {:>9.1}\n{:<20} {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} non-2xx",
        "S4 http_ingest",
        mib_per_sec,
        events_per_sec(&report),
        report.seconds,
        measurement.cpu_secs,
        measurement.cpu_secs / gib,
        measurement.peak_rss_mib,
        "",
        report.requests as f64 / report.seconds,
        report.p50_ms,
        report.p99_ms,
        report.non_2xx
    ))
}

/// The wrk script of PIX: tracking-pixel GETs with a browser's query string (one event each),
/// cycling through 100 pages and visitors.
const PIX_SCRIPT: &str = r#"-- PIX pixel_ingest: GET /p.gif?... as a page view, one event per request.
local requests = {}
local counter = 0
function init(args)
  for i = 1, 100 do
    requests[i] = wrk.format("GET", "/p.gif?event=view&page=%2Fproduct%2F" .. i ..
      "&visitor_id=v" .. (i * 7919 % 1000) .. "&ref=https%3A%2F%2Fsearch.example%2F%3Fq%3Dshoes",
      {["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
       ["Referer"] = "https://shop.example/product/" .. i})
  end
  counter = math.random(#requests)
end
function request()
  counter = counter + 1
  return requests[counter % #requests + 1]
end
"#;

/// PIX pixel_ingest: `wrk` GETs the tracking pixel (with `cors`, the user agent copied) over 16
/// connections to `sluice run` (http_server → topic → blackhole) for [`S4_SECONDS`]; reports the
/// median run by events (= requests) per second, with p50/p99 latency on a second line.
fn pixel_ingest(options: &Options, binary: &Path) -> Result<String, String> {
    let data = fs::canonicalize(&options.data).map_err(|e| e.to_string())?;
    let script = data.join("PIX.lua");
    fs::write(&script, PIX_SCRIPT).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let config = format!(
        r#"data_dir = "{data}/state"

[sources.ingest]
type = "http_server"
address = "127.0.0.1:{port}"
pixel_path = "/p.gif"
copy_headers = ["user-agent"]
cors = {{ allowed_origins = ["https://shop.example"] }}
topic = "raw"

[sinks.null]
type = "blackhole"
input = "raw"
"#,
        data = data.display()
    );
    let config_path = data.join("PIX.toml");
    fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    for _ in 0..options.runs.max(1) {
        let _ = fs::remove_dir_all(data.join("state"));
        runs.push(measure_server(binary, &config_path, port, |url| {
            run_wrk(url, &script, &script)
        })?);
    }
    let events_per_sec =
        |report: &WrkReport| (report.requests - report.non_2xx) as f64 / report.seconds;
    runs.sort_by(|a, b| events_per_sec(&a.1).total_cmp(&events_per_sec(&b.1)));
    let (measurement, report) = runs[runs.len() / 2];
    Ok(format!(
        "{:<20} {:>10} {:>12.0} {:>9.3} {:>11.3} {:>10} {:>9.1}\n{:<20} p50 {:.2} ms, p99 {:.2} ms, {} non-2xx, {:.2} CPU-µs per event",
        "PIX pixel_ingest",
        "-",
        events_per_sec(&report),
        report.seconds,
        measurement.cpu_secs,
        "-",
        measurement.peak_rss_mib,
        "",
        report.p50_ms,
        report.p99_ms,
        report.non_2xx,
        measurement.cpu_secs * 1e6 / (report.requests - report.non_2xx).max(1) as f64
    ))
}

/// Runs wrk against `url` and parses its report.
fn run_wrk(url: &str, script: &Path, events: &Path) -> Result<WrkReport, String> {
    let output = Command::new("wrk")
        .arg(format!("-t{S4_THREADS}"))
        .arg(format!("-c{S4_CONNECTIONS}"))
        .arg(format!("-d{S4_SECONDS}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .arg("--")
        .arg(events)
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's report:\n{text}"))
}

/// Reads requests, duration, non-2xx answers and the p50/p99 latencies from wrk's output.
fn parse_wrk(text: &str) -> Option<WrkReport> {
    let millis = |value: &str| -> Option<f64> {
        let split = value.find(|c: char| c.is_ascii_alphabetic())?;
        let (number, unit) = value.split_at(split);
        let number: f64 = number.parse().ok()?;
        Some(match unit {
            "us" => number / 1000.0,
            "ms" => number,
            "s" => number * 1000.0,
            "m" => number * 60_000.0,
            _ => return None,
        })
    };
    let mut report = WrkReport {
        seconds: 0.0,
        requests: 0,
        non_2xx: 0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [count, "requests", "in", duration, ..] => {
                report.requests = count.parse().ok()?;
                report.seconds = duration
                    .trim_end_matches(',')
                    .trim_end_matches('s')
                    .parse()
                    .ok()?;
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => report.non_2xx = count.parse().ok()?,
            ["50%", value] => report.p50_ms = millis(value)?,
            ["99%", value] => report.p99_ms = millis(value)?,
            _ => {}
        }
    }
    (report.requests > 0 && report.seconds > 0.0).then_some(report)
}

/// Starts `sluice run -c config`, waits until it listens on `port`, runs `load` against it, then
/// stops it with SIGTERM and measures it over its whole life.
fn measure_server(
    binary: &Path,
    config: &Path,
    port: u16,
    load: impl FnOnce(&str) -> Result<WrkReport, String>,
) -> Result<(Measurement, WrkReport), String> {
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["run", "--quiet", "--log", "warn", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id() as libc::pid_t;
    let stop = || {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    };
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let ready = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(address).is_ok()
    });
    let report = if ready {
        load(&format!("http://{address}/"))
    } else {
        Err(format!("sluice did not listen on {address}"))
    };
    stop();
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid, exclusively borrowed out-parameters.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_secs = started.elapsed().as_secs_f64();
    let report = report?;
    if waited != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("sluice exited with status {status}"));
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        Measurement {
            wall_secs,
            cpu_secs: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        },
        report,
    ))
}

/// F100: how many files S1's input is split into.
const F100_FILES: usize = 100;

/// F100 many_files: S1's input split round-robin by line into [`F100_FILES`] files, all tailed
/// at once by one file source (`follow = false`) into a blackhole; reported like S1.
fn many_files(options: &Options, binary: &Path) -> Result<String, String> {
    use std::io::{BufRead, BufReader, BufWriter, Write};
    let log = input(options, "nginx")?;
    let data = fs::canonicalize(&options.data).map_err(|e| e.to_string())?;
    let dir = data.join(format!("f{F100_FILES}-{}mb", options.mb));
    if !dir.join("done").exists() {
        eprintln!("splitting {} into {F100_FILES} files…", log.display());
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut outputs = (0..F100_FILES)
            .map(|n| {
                fs::File::create(dir.join(format!("access-{n:03}.log")))
                    .map(|file| BufWriter::with_capacity(1 << 16, file))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let reader = BufReader::new(fs::File::open(&log).map_err(|e| e.to_string())?);
        for (index, line) in reader.split(b'\n').enumerate() {
            let mut line = line.map_err(|e| e.to_string())?;
            line.push(b'\n');
            outputs[index % F100_FILES]
                .write_all(&line)
                .map_err(|e| e.to_string())?;
        }
        for mut output in outputs {
            output.flush().map_err(|e| e.to_string())?;
        }
        fs::write(dir.join("done"), b"").map_err(|e| e.to_string())?;
    }
    let config = format!(
        r#"data_dir = "{data}/state"

[sources.access]
type = "file"
include = ["{dir}/*.log"]
follow = false
topic = "raw"

[sinks.null]
type = "blackhole"
input = "raw"
"#,
        data = data.display(),
        dir = dir.display()
    );
    let config_path = options.data.join("F100.toml");
    fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let input_bytes = fs::metadata(&log).map_err(|e| e.to_string())?.len();
    let lines = count_lines(&log)?;
    let mut runs = Vec::new();
    for _ in 0..options.runs.max(1) {
        let _ = fs::remove_dir_all(options.data.join("state"));
        runs.push(measure(binary, &config_path)?);
    }
    runs.sort_by(|a, b| a.wall_secs.total_cmp(&b.wall_secs));
    let median = runs[runs.len() / 2];
    let mib = input_bytes as f64 / (1024.0 * 1024.0);
    Ok(format!(
        "{:<20} {:>10.1} {:>12.0} {:>9.3} {:>11.3} {:>10.2} {:>9.1}",
        format!("F100 {F100_FILES}_files"),
        mib / median.wall_secs,
        lines as f64 / median.wall_secs,
        median.wall_secs,
        median.cpu_secs,
        median.cpu_secs / (mib / 1024.0),
        median.peak_rss_mib
    ))
}

/// ROT: the writer's rate, how long it writes, and how often it rotates.
const ROT_LINES_PER_SEC: u64 = 50_000;
const ROT_SECONDS: u64 = 20;
const ROT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// ROT rotation_share: a writer appends numbered access-log lines at [`ROT_LINES_PER_SEC`] for
/// [`ROT_SECONDS`], rotating by rename every second and keeping only 2 old files (the oldest is
/// deleted at each rotation), like logrotate + nginx under a tight policy. `sluice run` tails
/// `access.log*` into a file; the share of distinct lines collected is reported (the goal is
/// 100%), with duplicates, CPU seconds and peak RSS.
fn rotation_share(options: &Options, binary: &Path) -> Result<String, String> {
    use std::collections::HashSet;
    use std::io::{BufRead, BufReader, Write};
    use std::time::Duration;
    let data = fs::canonicalize(&options.data).map_err(|e| e.to_string())?;
    let dir = data.join("rot");
    let _ = fs::remove_dir_all(&dir);
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let output = dir.join("out.txt");
    let config = format!(
        r#"data_dir = "{dir}/state"

[sources.access]
type = "file"
include = ["{logs}/access.log*"]
topic = "raw"

[sinks.out]
type = "file"
input = "raw"
path = "{output}"
encoding = "text"
"#,
        dir = dir.display(),
        logs = logs.display(),
        output = output.display()
    );
    let config_path = options.data.join("ROT.toml");
    fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["run", "--quiet", "--log", "warn", "-c"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id() as libc::pid_t;

    // The writer: 50 writes of 1,000 lines a second, on an absolute schedule.
    let live = logs.join("access.log");
    let open = |path: &Path| {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| e.to_string())
    };
    let mut file = open(&live)?;
    let per_write = ROT_LINES_PER_SEC / 50;
    let mut written = 0u64;
    let mut chunk = String::new();
    let begin = Instant::now();
    let mut next_rotation = begin + ROT_EVERY;
    let mut rotations = 0;
    for tick in 0..ROT_SECONDS * 50 {
        let due = begin + Duration::from_millis(tick * 20);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if Instant::now() >= next_rotation {
            let _ = fs::remove_file(logs.join("access.log.2"));
            let _ = fs::rename(logs.join("access.log.1"), logs.join("access.log.2"));
            fs::rename(&live, logs.join("access.log.1")).map_err(|e| e.to_string())?;
            file = open(&live)?;
            next_rotation += ROT_EVERY;
            rotations += 1;
        }
        chunk.clear();
        for _ in 0..per_write {
            chunk.push_str(&format!(
                "10.0.{}.{} - - [01/May/2024:12:00:00 +0000] \"GET /p/{written:010} HTTP/1.1\" 200 {} \"-\" \"bench\"\n",
                written % 251,
                written % 241,
                written % 9000
            ));
            written += 1;
        }
        file.write_all(chunk.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let write_secs = begin.elapsed().as_secs_f64();

    // Let sluice catch up (the output stops growing), then stop it cleanly.
    let mut last_len = 0;
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(200));
        let len = fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
        if len != last_len {
            last_len = len;
            stable_since = Instant::now();
        }
    }
    // SAFETY: signalling our own child; `rusage` is plain data that wait4 fills in.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status = 0;
    // SAFETY: `rusage` is integers and `timeval`s, for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid, exclusively borrowed out-parameters.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu_secs = seconds(usage.ru_utime) + seconds(usage.ru_stime);

    let mut seen = HashSet::new();
    let mut lines = 0u64;
    let reader = BufReader::new(fs::File::open(&output).map_err(|e| e.to_string())?);
    for line in reader.lines() {
        let line = line.map_err(|e| e.to_string())?;
        lines += 1;
        if let Some(at) = line.find("/p/")
            && let Some(seq) = line
                .get(at + 3..at + 13)
                .and_then(|s| s.parse::<u64>().ok())
        {
            seen.insert(seq);
        }
    }
    let collected = seen.len() as u64;
    Ok(format!(
        "{:<20} {:>9.2}% collected: {collected} of {written} lines ({} duplicated) at {:.0} \
         lines/s through {rotations} rename rotations keeping 2 old files; {cpu_secs:.2} CPU s \
         in {wall_secs:.1} s, {:.1} MiB RSS",
        "ROT rotation_share",
        collected as f64 * 100.0 / written as f64,
        lines - collected,
        written as f64 / write_secs,
        usage.ru_maxrss as f64 / 1024.0
    ))
}

/// K: the S1 lines into Kafka and out again, through a tansu broker (in-memory storage) started
/// on a free port. K1 tails the file into a `kafka` sink (lz4, `acks = "all"`, idempotent) and
/// ends when every message is confirmed; K2 reads them back with a `kafka` source in a new
/// consumer group (`start_at = "earliest"`) into a blackhole, stopped (SIGTERM) once its
/// blackhole counted every line. The broker shares the machine's cores.
fn kafka(options: &Options, binary: &Path) -> Result<String, String> {
    let log = input(options, "nginx")?;
    let log = fs::canonicalize(&log).map_err(|e| e.to_string())?;
    let data = fs::canonicalize(&options.data).map_err(|e| e.to_string())?;
    let lines = count_lines(&log)?;
    let input_bytes = fs::metadata(&log).map_err(|e| e.to_string())?.len();
    let broker = sluice_store_support::Tansu::start();
    broker.create_topic("bench", 4);
    let produce = format!(
        r#"data_dir = "{data}/state-k1"

[sources.access]
type = "file"
include = ["{log}"]
follow = false
topic = "raw"

[sinks.kafka]
type = "kafka"
input = "raw"
brokers = ["{brokers}"]
topic = "bench"
encoding = "text"
compression = "lz4"
librdkafka_options = {{ "linger.ms" = "20", "batch.size" = "1000000" }}
"#,
        data = data.display(),
        log = log.display(),
        brokers = broker.address()
    );
    let produce_path = options.data.join("K1.toml");
    fs::write(&produce_path, produce).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(data.join("state-k1"));
    let k1 = measure(binary, &produce_path)?;

    let api_port = sluice_store_support::free_port();
    let consume = format!(
        r#"data_dir = "{data}/state-k2"

[api]
address = "127.0.0.1:{api_port}"

[sources.kafka]
type = "kafka"
topic = "raw"
brokers = ["{brokers}"]
topics = ["bench"]
group_id = "bench"
start_at = "earliest"
decoding = "text"

[sinks.null]
type = "blackhole"
input = "raw"
"#,
        data = data.display(),
        brokers = broker.address()
    );
    let consume_path = options.data.join("K2.toml");
    fs::write(&consume_path, consume).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(data.join("state-k2"));
    let k2 = measure_until(binary, &consume_path, api_port, lines)?;
    let mib = input_bytes as f64 / (1024.0 * 1024.0);
    let row = |label: &str, run: &Measurement| {
        format!(
            "{:<20} {:>10.1} {:>12.0} {:>9.3} {:>11.3} {:>10.2} {:>9.1}",
            label,
            mib / run.wall_secs,
            lines as f64 / run.wall_secs,
            run.wall_secs,
            run.cpu_secs,
            run.cpu_secs / (mib / 1024.0),
            run.peak_rss_mib
        )
    };
    Ok(format!(
        "{}\n{}",
        row("K1 tail_to_kafka", &k1),
        row("K2 kafka_to_null", &k2)
    ))
}

/// Runs `sluice run -c config` until the blackhole `null` counted `events` (asked through the
/// admin API on `api_port`), then stops it with SIGTERM and measures the run.
fn measure_until(
    binary: &Path,
    config: &Path,
    api_port: u16,
    events: u64,
) -> Result<Measurement, String> {
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["run", "--quiet", "--log", "warn", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    let mut counted = 0;
    while counted < events {
        if Instant::now() > deadline {
            return Err(format!("only {counted} of {events} events consumed"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        counted = blackhole_events(api_port).unwrap_or(0);
    }
    let wall_secs = started.elapsed().as_secs_f64();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid, exclusively borrowed out-parameters.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measurement {
        wall_secs,
        cpu_secs: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}

/// The events the sink `null` wrote, from the admin API's Prometheus metrics.
fn blackhole_events(api_port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", api_port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|line| {
            line.starts_with("sluice_component_events_out_total") && line.contains("\"null\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.trim().parse().ok())
}

/// Lines of the NATS scenarios' input: one JetStream message each.
const NATS_LINES: u64 = 500_000;

/// N1 and N2: the S1 nginx lines into a JetStream stream (file → topic → `nats` sink, each
/// message acknowledged by the stream) and out of it again (durable consumer → topic →
/// blackhole), against a `nats-server -js` of its own. One line per direction.
fn nats_round_trip(options: &Options, binary: &Path) -> Result<String, String> {
    let data = fs::canonicalize(&options.data).map_err(|e| e.to_string())?;
    let log = data.join(format!("nginx-{NATS_LINES}-lines.log"));
    generate(options, "nginx", &format!("--lines={NATS_LINES}"), &log)?;
    let input_bytes = fs::metadata(&log).map_err(|e| e.to_string())?.len();
    let store = data.join("nats-store");
    let _ = fs::remove_dir_all(&store);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let server = "/usr/sbin/nats-server";
    /// Kills the server however the runs end (a panic included).
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let nats = Command::new(server)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {server} (apt-get install -y nats-server): {e}"))?;
    let nats = Server(nats);
    let result = nats_runs(options, binary, &data, &log, port, input_bytes);
    drop(nats);
    let _ = fs::remove_dir_all(&store);
    result
}

fn nats_runs(
    options: &Options,
    binary: &Path,
    data: &Path,
    log: &Path,
    port: u16,
    input_bytes: u64,
) -> Result<String, String> {
    let url = format!("nats://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed().as_secs() > 10 {
            return Err("nats-server did not start".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let into = format!(
        r#"data_dir = "{data}/state"

[sources.access]
type = "file"
include = ["{log}"]
follow = false
topic = "raw"

[sinks.nats]
type = "nats"
input = "raw"
url = "{url}"
subject = "bench.nginx"
jetstream = {{ stream = "BENCH" }}
encoding = "text"
"#,
        data = data.display(),
        log = log.display()
    );
    let out = format!(
        r#"data_dir = "{data}/state"

[sources.nats]
type = "nats"
topic = "raw"
url = "{url}"
subject = "bench.>"
decoding = "text"
jetstream = {{ stream = "BENCH", durable = "bench" }}

[sinks.null]
type = "blackhole"
input = "raw"
"#,
        data = data.display()
    );
    let into_path = options.data.join("N1.toml");
    let out_path = options.data.join("N2.toml");
    fs::write(&into_path, into).map_err(|e| e.to_string())?;
    fs::write(&out_path, out).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(data.join("state"));
    let published = measure(binary, &into_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = runtime
        .block_on(async_nats::connect(url.as_str()))
        .map_err(|e| e.to_string())?;
    // The JetStream context spawns a task: it needs the runtime entered.
    let _entered = runtime.enter();
    let jetstream = async_nats::jetstream::new(client);
    let consumed = measure_until_done(binary, &out_path, || {
        runtime.block_on(async {
            let Ok(mut consumer) = jetstream
                .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                    "bench", "BENCH",
                )
                .await
            else {
                return false;
            };
            let Ok(info) = consumer.info().await else {
                return false;
            };
            info.delivered.stream_sequence >= NATS_LINES
                && info.num_pending == 0
                && info.num_ack_pending == 0
        })
    })?;
    let mib = input_bytes as f64 / (1024.0 * 1024.0);
    let line = |name: &str, m: Measurement| {
        format!(
            "{:<20} {:>10.1} {:>12.0} {:>9.3} {:>11.3} {:>10.2} {:>9.1}",
            name,
            mib / m.wall_secs,
            NATS_LINES as f64 / m.wall_secs,
            m.wall_secs,
            m.cpu_secs,
            m.cpu_secs / (mib / 1024.0),
            m.peak_rss_mib
        )
    };
    Ok(format!(
        "{}\n{}",
        line("N1 file_to_jetstream", published),
        line("N2 jetstream_to_null", consumed)
    ))
}

/// Runs `sluice run -c config` until `done` holds (polled every 20 ms), then stops it with
/// SIGTERM and measures it; the wall time ends when `done` first held.
fn measure_until_done(
    binary: &Path,
    config: &Path,
    mut done: impl FnMut() -> bool,
) -> Result<Measurement, String> {
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["run", "--quiet", "--log", "warn", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id() as libc::pid_t;
    while !done() {
        if started.elapsed().as_secs() > 600 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let wall_secs = started.elapsed().as_secs_f64();
    // SAFETY: signalling our own child, not yet waited for.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid, exclusively borrowed out-parameters.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    if wall_secs > 600.0 {
        return Err("the consumer did not catch up within 10 minutes".into());
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measurement {
        wall_secs,
        cpu_secs: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}
