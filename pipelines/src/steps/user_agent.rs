//! The `user_agent` step: browser, OS and device from a user-agent string.
//!
//! ```toml
//! steps = [{ type = "user_agent", field = "agent", target = "ua", cache_size = 10000 }]
//! ```
//!
//! The string in `field` (a dotted path) is parsed with [woothee] (the rule set shared by the
//! Ruby, Java, Go and Rust ports of the Woothee project) into:
//!
//! | field             | example     | when set                                    |
//! |-------------------|-------------|---------------------------------------------|
//! | `browser`         | `Chrome`    | the browser or crawler is recognised        |
//! | `browser_version` | `120.0.0.0` | its version is known                        |
//! | `os`              | `Windows 10`| the operating system is recognised          |
//! | `os_version`      | `NT 10.0`   | its version is known                        |
//! | `device`          | `desktop`   | always: `desktop`, `smartphone`, `tablet`, `feature_phone`, `crawler`, `appliance` (consoles, TVs), `other` or `unknown` |
//!
//! Parts that are not recognised are left unset (rather than set to a made-up word), so a store
//! sees them as missing; `device` is always set so every event falls in one device group. The
//! fields go at the top level, or under the map `target` when it is given.
//!
//! Woothee reports iPads and Android devices alike as smartphones; `device` separates tablets:
//! an iPad, or an Android agent without the word `Mobile` (Google's rule for Android tablets).
//!
//! A missing field leaves the event unchanged (a request without a user agent is not an error);
//! a field that is not a string is rejected (dead letter). The same agents repeat over and over,
//! so results are kept in a bounded cache of `cache_size` recent agents (two generations: a hit
//! in the older one moves the entry to the newer; when the newer is full the older is dropped),
//! which makes the step's cost per event a hash lookup for all but the first sighting.

use std::collections::HashMap;
use std::fmt;

use super::common::parse_path;
use crate::event::{Event, FieldName, Value};
use crate::step::{BuildError, Step, StepContext};

/// Config of the `user_agent` step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAgentConfig {
    /// The field holding the user-agent string (a dotted path).
    pub field: String,
    /// A map to put the results under (a dotted path); the top level when absent.
    #[serde(default)]
    pub target: Option<String>,
    /// How many distinct agents' results are remembered (default 10 000).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

fn default_cache_size() -> usize {
    10_000
}

/// Most agents the cache may hold (a few hundred bytes each).
const CACHE_SIZE_LIMIT: usize = 1_000_000;

/// Longest agent string that is parsed; longer ones are cut there first (real agents are a few
/// hundred bytes; a multi-kilobyte one is junk or an attack on the parser).
const MAX_AGENT_BYTES: usize = 2048;

impl UserAgentConfig {
    /// Interns the paths and sizes the cache.
    ///
    /// # Errors
    /// A [`BuildError`] at `field` or `target` for a bad path, at `cache_size` when 0 or above
    /// 1 000 000.
    pub fn build(&self) -> Result<UserAgent, BuildError> {
        let field = parse_path("field", &self.field)?;
        let target = match &self.target {
            Some(target) => parse_path("target", target)?,
            None => Vec::new(),
        };
        if self.cache_size == 0 || self.cache_size > CACHE_SIZE_LIMIT {
            return Err(BuildError::at(
                "cache_size",
                format!("`cache_size` must be between 1 and {CACHE_SIZE_LIMIT}"),
            ));
        }
        let output = |name: &str| {
            let mut path = target.clone();
            path.push(FieldName::new(name));
            path
        };
        Ok(UserAgent {
            field,
            outputs: Outputs {
                browser: output("browser"),
                browser_version: output("browser_version"),
                os: output("os"),
                os_version: output("os_version"),
                device: output("device"),
            },
            parser: woothee::parser::Parser::new(),
            cache: Cache::new(self.cache_size),
        })
    }
}

/// Where each result goes.
#[derive(Debug)]
struct Outputs {
    browser: Vec<FieldName>,
    browser_version: Vec<FieldName>,
    os: Vec<FieldName>,
    os_version: Vec<FieldName>,
    device: Vec<FieldName>,
}

/// What an agent string says, ready to insert (values are cheap to clone: shared bytes).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    browser: Option<Value>,
    browser_version: Option<Value>,
    os: Option<Value>,
    os_version: Option<Value>,
    device: Value,
}

/// The `user_agent` step, built from a [`UserAgentConfig`].
pub struct UserAgent {
    field: Vec<FieldName>,
    outputs: Outputs,
    parser: woothee::parser::Parser,
    cache: Cache,
}

impl fmt::Debug for UserAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAgent")
            .field("field", &self.field)
            .field("outputs", &self.outputs)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// Woothee's word for "not recognised".
const UNKNOWN: &str = "UNKNOWN";

fn known(value: &str) -> Option<Value> {
    (!value.is_empty() && value != UNKNOWN).then(|| Value::from(value))
}

/// Parses one agent string (already cut to [`MAX_AGENT_BYTES`]).
pub(crate) fn parse_agent(parser: &woothee::parser::Parser, agent: &str) -> Parsed {
    let Some(result) = parser.parse(agent) else {
        return Parsed {
            browser: None,
            browser_version: None,
            os: None,
            os_version: None,
            device: Value::from("unknown"),
        };
    };
    let device = match result.category {
        "pc" => "desktop",
        "smartphone" if is_tablet(result.os, agent) => "tablet",
        "smartphone" => "smartphone",
        "mobilephone" => "feature_phone",
        "crawler" => "crawler",
        "appliance" => "appliance",
        "misc" => "other",
        _ => "unknown",
    };
    Parsed {
        browser: known(result.name),
        browser_version: known(result.version),
        os: known(result.os),
        os_version: known(&result.os_version),
        device: Value::from(device),
    }
}

/// Woothee counts tablets as smartphones: iPads by their OS name, Android tablets by the absence
/// of `Mobile` (Android phones' browsers send it, tablets' do not).
fn is_tablet(os: &str, agent: &str) -> bool {
    os == "iPad" || (os == "Android" && !agent.contains("Mobile"))
}

/// Cuts `agent` to at most [`MAX_AGENT_BYTES`] on a character boundary.
fn bounded(agent: &str) -> &str {
    if agent.len() <= MAX_AGENT_BYTES {
        return agent;
    }
    let mut end = MAX_AGENT_BYTES;
    while !agent.is_char_boundary(end) {
        end -= 1;
    }
    &agent[..end]
}

impl Step for UserAgent {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        let mut kept = Vec::with_capacity(events.len());
        for mut event in events.drain(..) {
            let parsed = match event.fields().get_path(&self.field) {
                None => {
                    kept.push(event);
                    continue;
                }
                Some(Value::String(agent)) => {
                    let agent = bounded(agent.as_str());
                    match self.cache.get(agent) {
                        Some(parsed) => parsed,
                        None => {
                            let parsed = parse_agent(&self.parser, agent);
                            self.cache.insert(agent, parsed.clone());
                            parsed
                        }
                    }
                }
                Some(other) => {
                    let message = format!(
                        "`{}` is {}, not a user-agent string",
                        super::common::join(&self.field),
                        other.kind()
                    );
                    ctx.reject(event, message);
                    continue;
                }
            };
            let outputs = &self.outputs;
            for (path, value) in [
                (&outputs.browser, parsed.browser),
                (&outputs.browser_version, parsed.browser_version),
                (&outputs.os, parsed.os),
                (&outputs.os_version, parsed.os_version),
                (&outputs.device, Some(parsed.device)),
            ] {
                if let Some(value) = value {
                    event.insert_path(path, value);
                }
            }
            kept.push(event);
        }
        *events = kept;
    }
}

/// A bounded cache of recent agents' results in two generations (see the module doc).
struct Cache {
    newer: HashMap<Box<str>, Parsed>,
    older: HashMap<Box<str>, Parsed>,
    /// Entries per generation: half the configured size, so both together hold at most it.
    generation: usize,
}

impl Cache {
    fn new(size: usize) -> Self {
        Cache {
            newer: HashMap::new(),
            older: HashMap::new(),
            generation: size.div_ceil(2),
        }
    }

    fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    fn get(&mut self, agent: &str) -> Option<Parsed> {
        if let Some(parsed) = self.newer.get(agent) {
            return Some(parsed.clone());
        }
        let (agent, parsed) = self.older.remove_entry(agent)?;
        self.insert_owned(agent, parsed.clone());
        Some(parsed)
    }

    fn insert(&mut self, agent: &str, parsed: Parsed) {
        self.insert_owned(agent.into(), parsed);
    }

    fn insert_owned(&mut self, agent: Box<str>, parsed: Parsed) {
        if self.newer.len() >= self.generation {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(agent, parsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::OnError;

    /// Real agent strings, each with what it must come out as: (agent, browser, os, device).
    const AGENTS: &[(&str, Option<&str>, Option<&str>, &str)] = &[
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Safari/537.36",
            Some("Chrome"),
            Some("Windows 10"),
            "desktop",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like \
             Gecko) Version/17.1 Safari/605.1.15",
            Some("Safari"),
            Some("Mac OSX"),
            "desktop",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            Some("Firefox"),
            Some("Linux"),
            "desktop",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, \
             like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            Some("Safari"),
            Some("iPhone"),
            "smartphone",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
             Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
            Some("Safari"),
            Some("iPad"),
            "tablet",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.6099.43 Mobile Safari/537.36",
            Some("Chrome"),
            Some("Android"),
            "smartphone",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Safari/537.36",
            Some("Chrome"),
            Some("Android"),
            "tablet",
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            Some("Googlebot"),
            None,
            "crawler",
        ),
        (
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            Some("bingbot"),
            None,
            "crawler",
        ),
        ("curl/8.5.0", Some("HTTP Library"), None, "other"),
        (
            "Mozilla/5.0 (PlayStation 4 5.55) AppleWebKit/601.2 (KHTML, like Gecko)",
            Some("PlayStation 4"),
            Some("PlayStation 4"),
            "appliance",
        ),
        ("definitely not a browser", None, None, "unknown"),
    ];

    fn step(toml_text: &str) -> UserAgent {
        let config: UserAgentConfig = toml::from_str(toml_text).unwrap();
        config.build().unwrap()
    }

    fn event_with(name: &str, value: Value) -> Event {
        let mut event = Event::default();
        event.insert(name, value);
        event
    }

    #[test]
    fn real_agents_come_out_as_browser_os_and_device() {
        let mut step = step("field = \"agent\"");
        let mut ctx = StepContext::new(OnError::DeadLetter);
        for (agent, browser, os, device) in AGENTS {
            let mut events = vec![event_with("agent", Value::from(*agent))];
            step.process(&mut events, &mut ctx);
            let event = &events[0];
            let get = |name: &str| event.get(name).and_then(Value::as_str);
            assert_eq!(get("browser"), *browser, "browser of {agent}");
            assert_eq!(get("os"), *os, "os of {agent}");
            assert_eq!(get("device"), Some(*device), "device of {agent}");
            assert_eq!(get("agent"), Some(*agent), "the agent itself is kept");
        }
        assert_eq!(ctx.rejected(), 0);
    }

    #[test]
    fn versions_are_set_when_known() {
        let mut step = step("field = \"agent\"");
        let mut ctx = StepContext::new(OnError::DeadLetter);
        let mut events = vec![event_with("agent", Value::from(AGENTS[0].0))];
        step.process(&mut events, &mut ctx);
        assert_eq!(
            events[0].get("browser_version").and_then(Value::as_str),
            Some("120.0.0.0")
        );
        assert_eq!(
            events[0].get("os_version").and_then(Value::as_str),
            Some("NT 10.0")
        );
        let mut events = vec![event_with("agent", Value::from("definitely not a browser"))];
        step.process(&mut events, &mut ctx);
        assert_eq!(events[0].get("browser_version"), None);
        assert_eq!(events[0].get("os_version"), None);
    }

    #[test]
    fn results_go_under_target_and_the_source_may_be_nested() {
        let mut step = step("field = \"http.agent\"\ntarget = \"client.ua\"");
        let mut ctx = StepContext::new(OnError::DeadLetter);
        let mut event = Event::default();
        event.insert_path(
            &[FieldName::new("http"), FieldName::new("agent")],
            Value::from(AGENTS[3].0),
        );
        let mut events = vec![event];
        step.process(&mut events, &mut ctx);
        let path = |name: &str| {
            events[0]
                .get_path(&["client", "ua", name])
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        assert_eq!(path("browser").as_deref(), Some("Safari"));
        assert_eq!(path("device").as_deref(), Some("smartphone"));
        assert_eq!(events[0].get("device"), None);
    }

    #[test]
    fn missing_fields_pass_and_other_types_are_rejected() {
        let mut step = step("field = \"agent\"");
        let mut ctx = StepContext::new(OnError::DeadLetter);
        let mut events = vec![
            event_with("path", Value::from("/")),
            event_with("agent", Value::Int(7)),
        ];
        step.process(&mut events, &mut ctx);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].get("device"), None, "no agent, nothing added");
        let dead = ctx.take_dead_letters();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].error.contains("`agent` is int"),
            "{}",
            dead[0].error
        );
    }

    #[test]
    fn the_cache_stays_bounded_and_answers_like_the_parser() {
        let mut step = step("field = \"agent\"\ncache_size = 4");
        let mut ctx = StepContext::new(OnError::DeadLetter);
        let parser = woothee::parser::Parser::new();
        for round in 0..3 {
            for (agent, ..) in AGENTS {
                let mut events = vec![event_with("agent", Value::from(*agent))];
                step.process(&mut events, &mut ctx);
                let expected = parse_agent(&parser, agent);
                assert_eq!(events[0].get("device"), Some(&expected.device), "{round}");
                assert!(step.cache.len() <= 4, "cache holds {}", step.cache.len());
            }
        }
    }

    #[test]
    fn bad_config_names_the_key() {
        for (text, key) in [
            ("field = \"a..b\"", "field"),
            ("field = \"a\"\ntarget = \".x\"", "target"),
            ("field = \"a\"\ncache_size = 0", "cache_size"),
        ] {
            let config: UserAgentConfig = toml::from_str(text).unwrap();
            let error = config.build().unwrap_err();
            assert_eq!(error.key.as_deref(), Some(key), "{text}");
        }
    }

    proptest::proptest! {
        /// Any string, of any length, parses without panicking and always yields a device.
        #[test]
        fn arbitrary_agents_never_panic(agent in "\\PC{0,3000}") {
            let mut step = step("field = \"agent\"\ncache_size = 16");
            let mut ctx = StepContext::new(OnError::DeadLetter);
            let mut events = vec![event_with("agent", Value::from(agent.as_str()))];
            step.process(&mut events, &mut ctx);
            proptest::prop_assert!(events[0].get("device").is_some());
        }
    }
}
