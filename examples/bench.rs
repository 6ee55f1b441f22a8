//! The end-to-end benchmark runner: runs DESIGN.md's scenarios through a real `sluice run` and
//! reports MiB/s, events/s, CPU seconds (and CPU seconds per GiB) and peak RSS.
//!
//! ```text
//! cargo run --release --example bench -- S1 S2 [--mb 256] [--runs 3] [--data DIR] [--gen PATH]
//! ```
//!
//! Input files are generated once with `../shared/bench/gen_logs.py` (deterministic) into the data
//! directory (default `./bench-data`) and reused. Each scenario writes its config next to the data,
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
    generator: PathBuf,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        scenarios: Vec::new(),
        mb: 256,
        runs: 3,
        data: PathBuf::from("bench-data"),
        generator: PathBuf::from("../shared/bench/gen_logs.py"),
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
            "--gen" => options.generator = PathBuf::from(value("--gen")?),
            "-h" | "--help" => {
                return Err(
                    "usage: bench [S1 S2 S2R S3 S4 S5 | all] [--mb N] [--runs N] \
                            [--data DIR] [--gen gen_logs.py]"
                        .into(),
                );
            }
            scenario => options.scenarios.push(scenario.to_uppercase()),
        }
    }
    if options.scenarios.is_empty() || options.scenarios.iter().any(|s| s == "ALL") {
        options.scenarios = ["S1", "S2", "S2R", "S3", "S4", "S5"]
            .map(String::from)
            .to_vec();
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
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
        .join(format!("{format}-{}mb.{extension}", options.mb));
    if path.exists() {
        return Ok(path);
    }
    if !options.generator.exists() {
        return Err(format!(
            "generator {} not found; pass --gen PATH/gen_logs.py",
            options.generator.display()
        ));
    }
    eprintln!("generating {} ({} MiB)…", path.display(), options.mb);
    let status = Command::new("python3")
        .arg(&options.generator)
        .args(["--format", format, "--mb", &options.mb.to_string(), "--out"])
        .arg(&path)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        let _ = fs::remove_file(&path);
        return Err("gen_logs.py failed".into());
    }
    Ok(path)
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
            let config = format!(
                r#"data_dir = "{data}/state"

[sources.access]
type = "file"
include = ["{log}"]
follow = false
topic = "raw"

[sinks.null]
type = "blackhole"
input = "raw"
"#,
                data = data.display(),
                log = fs::canonicalize(&log).map_err(|e| e.to_string())?.display()
            );
            (config, log, "tail_to_null")
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
        "S4" | "S5" => {
            eprintln!(
                "{scenario}: not available yet (needs {})",
                match scenario {
                    "S4" => "the http_server source",
                    _ => "disk topics",
                }
            );
            return Ok(None);
        }
        other => return Err(format!("unknown scenario {other}")),
    };
    Ok(Some(config))
}

fn run_scenario(
    scenario: &str,
    options: &Options,
    binary: &Path,
) -> Result<Option<String>, String> {
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
