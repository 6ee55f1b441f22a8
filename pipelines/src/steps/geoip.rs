//! The `geoip` step: country, city and coordinates of an IP address from a MaxMind DB file.
//!
//! ```toml
//! steps = [{ type = "geoip", field = "client_ip", database = "/var/lib/GeoIP/GeoLite2-City.mmdb",
//!            target = "geo", fields = ["country", "city", "latitude", "longitude"] }]
//! ```
//!
//! The address in `field` (a dotted path; IPv4 or IPv6 text) is looked up in `database`, a MaxMind
//! DB file (GeoLite2/GeoIP2 City or Country, DB-IP's MMDB files, or any database with the same
//! record layout), and the chosen `fields` are added — at the top level, or under the map
//! `target` when given:
//!
//! | field          | record path                   | example          |
//! |----------------|-------------------------------|------------------|
//! | `country`      | `country.iso_code`            | `GB`             |
//! | `country_name` | `country.names.<language>`    | `United Kingdom` |
//! | `continent`    | `continent.code`              | `EU`             |
//! | `region`       | `subdivisions[0].names.<language>` | `England`   |
//! | `region_code`  | `subdivisions[0].iso_code`    | `ENG`            |
//! | `city`         | `city.names.<language>`       | `London`         |
//! | `postal_code`  | `postal.code`                 | `EC2V`           |
//! | `latitude`     | `location.latitude`           | `51.5142`        |
//! | `longitude`    | `location.longitude`          | `-0.0931`        |
//! | `timezone`     | `location.time_zone`          | `Europe/London`  |
//!
//! `fields` defaults to `country`, `city`, `latitude`, `longitude`; `language` (default `en`)
//! picks the names. What the database does not know for an address (a private address, a country
//! database asked for a city) is left unset. A missing field leaves the event unchanged; a value
//! that is not an IP address is rejected (dead letter).
//!
//! The database is memory-mapped when the step is built: a missing or unreadable file is a
//! config error naming the path. About once every few seconds (on [`Step::tick`]) the step checks
//! whether the file was replaced (its inode, size or modification time changed) and then opens
//! the new one; if that fails it keeps the old one and says why in the log. Update the database
//! the way `geoipupdate` does, by writing a new file and renaming it over the old one: a file
//! truncated or rewritten in place under a live mapping would be read as garbage or fault.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use maxminddb::{MaxMindDbError, Mmap, PathElement, Reader};

use super::common::parse_path;
use crate::event::{Event, FieldName, Value};
use crate::step::{BuildError, Step, StepContext};

/// Config of the `geoip` step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoIpConfig {
    /// The field holding the IP address (a dotted path).
    pub field: String,
    /// The MaxMind DB file.
    pub database: PathBuf,
    /// A map to put the results under (a dotted path); the top level when absent.
    #[serde(default)]
    pub target: Option<String>,
    /// Which results to add (see the module doc); `country`, `city`, `latitude`, `longitude`
    /// when absent.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// The language of country, region and city names (a key of the database's `names` maps).
    #[serde(default = "default_language")]
    pub language: String,
}

fn default_language() -> String {
    "en".to_owned()
}

/// One result the step can add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Country,
    CountryName,
    Continent,
    Region,
    RegionCode,
    City,
    PostalCode,
    Latitude,
    Longitude,
    Timezone,
}

impl Output {
    const ALL: [(&'static str, Output); 10] = [
        ("country", Output::Country),
        ("country_name", Output::CountryName),
        ("continent", Output::Continent),
        ("region", Output::Region),
        ("region_code", Output::RegionCode),
        ("city", Output::City),
        ("postal_code", Output::PostalCode),
        ("latitude", Output::Latitude),
        ("longitude", Output::Longitude),
        ("timezone", Output::Timezone),
    ];

    fn named(name: &str) -> Option<Output> {
        Output::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, output)| *output)
    }

    /// Looks this output up in a record (`language` for names).
    fn read(
        self,
        record: &maxminddb::LookupResult<'_, Mmap>,
        language: &str,
    ) -> Result<Option<Value>, MaxMindDbError> {
        use PathElement::{Index, Key};
        let text = |path: &[PathElement<'_>]| {
            record
                .decode_path::<&str>(path)
                .map(|found| found.map(Value::from))
        };
        let number = |path: &[PathElement<'_>]| {
            record
                .decode_path::<f64>(path)
                .map(|found| found.map(Value::Float))
        };
        match self {
            Output::Country => text(&[Key("country"), Key("iso_code")]),
            Output::CountryName => text(&[Key("country"), Key("names"), Key(language)]),
            Output::Continent => text(&[Key("continent"), Key("code")]),
            Output::Region => text(&[Key("subdivisions"), Index(0), Key("names"), Key(language)]),
            Output::RegionCode => text(&[Key("subdivisions"), Index(0), Key("iso_code")]),
            Output::City => text(&[Key("city"), Key("names"), Key(language)]),
            Output::PostalCode => text(&[Key("postal"), Key("code")]),
            Output::Latitude => number(&[Key("location"), Key("latitude")]),
            Output::Longitude => number(&[Key("location"), Key("longitude")]),
            Output::Timezone => text(&[Key("location"), Key("time_zone")]),
        }
    }
}

/// How often the step looks whether the database file was replaced.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Records whose results are remembered (a database has far fewer distinct records than
/// networks: one per city, shared by all its networks).
const RECORD_CACHE_SIZE: usize = 16_384;

impl GeoIpConfig {
    /// Opens the database and interns the paths.
    ///
    /// # Errors
    /// A [`BuildError`] at `database` when the file cannot be opened or is not a MaxMind DB, at
    /// `field` or `target` for a bad path, at `fields[<i>]` for an unknown result, at `fields`
    /// when empty.
    pub fn build(&self) -> Result<GeoIp, BuildError> {
        let field = parse_path("field", &self.field)?;
        let target = match &self.target {
            Some(target) => parse_path("target", target)?,
            None => Vec::new(),
        };
        let names: Vec<String> = self.fields.clone().unwrap_or_else(|| {
            ["country", "city", "latitude", "longitude"]
                .map(str::to_owned)
                .to_vec()
        });
        if names.is_empty() {
            return Err(BuildError::at(
                "fields",
                "`fields` is empty: name the results to add",
            ));
        }
        let mut outputs = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let Some(output) = Output::named(name) else {
                let known: Vec<&str> = Output::ALL.iter().map(|(name, _)| *name).collect();
                return Err(BuildError::at(
                    format!("fields[{i}]"),
                    format!(
                        "unknown result `{name}`; expected one of {}",
                        known.join(", ")
                    ),
                ));
            };
            let mut path = target.clone();
            path.push(FieldName::new(name));
            outputs.push((output, path));
        }
        let database = Database::open(&self.database).map_err(|error| {
            BuildError::at(
                "database",
                format!(
                    "cannot open the GeoIP database {}: {error}",
                    self.database.display()
                ),
            )
        })?;
        Ok(GeoIp {
            field,
            outputs,
            language: self.language.clone(),
            path: self.database.clone(),
            database,
            last_check: Instant::now(),
            records: HashMap::new(),
        })
    }
}

/// What identifies one version of the database file: a replaced file differs in one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileIdentity {
    fn of(path: &std::path::Path) -> std::io::Result<FileIdentity> {
        let metadata = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(FileIdentity {
            inode,
            len: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// An open database and the file version it came from.
struct Database {
    reader: Reader<Mmap>,
    identity: FileIdentity,
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Format(#[from] MaxMindDbError),
}

impl Database {
    fn open(path: &std::path::Path) -> Result<Database, OpenError> {
        let identity = FileIdentity::of(path)?;
        // SAFETY: the mapping is read-only and private to this reader. Its contents stay valid as
        // long as nobody rewrites or truncates the file in place; updates that replace the file
        // (write a new one, rename it over the old, as geoipupdate and the documented procedure
        // do) leave the mapped inode untouched. The module doc states this requirement.
        let reader = unsafe { Reader::open_mmap(path) }?;
        Ok(Database { reader, identity })
    }
}

/// The `geoip` step, built from a [`GeoIpConfig`].
pub struct GeoIp {
    field: Vec<FieldName>,
    outputs: Vec<(Output, Vec<FieldName>)>,
    language: String,
    path: PathBuf,
    database: Database,
    last_check: Instant,
    /// Results by the record's offset in the database (cleared when full or reloaded).
    records: HashMap<usize, Vec<(usize, Value)>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("field", &self.field)
            .field("outputs", &self.outputs)
            .field("database", &self.path)
            .finish_non_exhaustive()
    }
}

impl GeoIp {
    /// Looks `ip` up and makes sure its record's results (with where each goes: indexes into
    /// `outputs`) are in `records`; returns the record's offset, `None` when the database knows
    /// nothing of the address.
    fn look_up(&mut self, ip: IpAddr) -> Option<usize> {
        let record = self.database.reader.lookup(ip).ok()?;
        let offset = record.offset()?;
        if !self.records.contains_key(&offset) {
            let mut found = Vec::with_capacity(self.outputs.len());
            for (index, (output, _)) in self.outputs.iter().enumerate() {
                // A value of an unexpected type in the database is treated as unknown: the event
                // is not at fault.
                if let Ok(Some(value)) = output.read(&record, &self.language) {
                    found.push((index, value));
                }
            }
            if self.records.len() >= RECORD_CACHE_SIZE {
                self.records.clear();
            }
            self.records.insert(offset, found);
        }
        Some(offset)
    }

    /// Opens the database again when its file was replaced; keeps the old one on failure.
    fn reload_if_replaced(&mut self) {
        let identity = match FileIdentity::of(&self.path) {
            Ok(identity) => identity,
            Err(error) => {
                tracing::warn!(
                    database = %self.path.display(),
                    %error,
                    "Cannot check the GeoIP database; using the one already loaded"
                );
                return;
            }
        };
        if identity == self.database.identity {
            return;
        }
        match Database::open(&self.path) {
            Ok(database) => {
                tracing::info!(database = %self.path.display(), "Reloaded the GeoIP database");
                self.database = database;
                self.records.clear();
            }
            Err(error) => {
                tracing::warn!(
                    database = %self.path.display(),
                    %error,
                    "Cannot load the changed GeoIP database; using the one already loaded"
                );
                // Do not try this version again on every check: wait for the next change.
                self.database.identity = identity;
            }
        }
    }
}

impl Step for GeoIp {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        let mut kept = Vec::with_capacity(events.len());
        for mut event in events.drain(..) {
            let ip = match event.fields().get_path(&self.field) {
                None => {
                    kept.push(event);
                    continue;
                }
                Some(Value::String(text)) => match text.as_str().trim().parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => {
                        let message = format!(
                            "`{}` is not an IP address: {:?}",
                            super::common::join(&self.field),
                            text.as_str().chars().take(64).collect::<String>()
                        );
                        ctx.reject(event, message);
                        continue;
                    }
                },
                Some(other) => {
                    let message = format!(
                        "`{}` is {}, not an IP address",
                        super::common::join(&self.field),
                        other.kind()
                    );
                    ctx.reject(event, message);
                    continue;
                }
            };
            if let Some(offset) = self.look_up(ip)
                && let Some(found) = self.records.get(&offset)
            {
                for (index, value) in found {
                    event.insert_path(&self.outputs[*index].1, value.clone());
                }
            }
            kept.push(event);
        }
        *events = kept;
    }

    fn tick(&mut self, _now: DateTime<Utc>, _out: &mut Vec<Event>, _ctx: &mut StepContext) {
        if self.last_check.elapsed() >= RELOAD_CHECK_INTERVAL {
            self.last_check = Instant::now();
            self.reload_if_replaced();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::OnError;
    use std::path::Path;
    use std::process::Command;

    /// Writes a small City database with `mmdb-writer` (PyPI): London for 81.2.69.0/24 and
    /// 2a02:8010::/32, Berlin (no postal code) for 5.9.0.0/16, or, with `moved`, London's
    /// network in Paris instead.
    pub(crate) fn build_database(path: &Path, moved: bool) {
        let (london_country, london_city) = if moved {
            ("('FR', 'France')", "'Paris'")
        } else {
            ("('GB', 'United Kingdom')", "'London'")
        };
        let script = format!(
            r#"
import sys
from mmdb_writer import MMDBWriter, MmdbF64
from netaddr import IPSet
def record(country, city, region, lat, lon, tz, postal):
    data = {{
        'continent': {{'code': 'EU', 'names': {{'en': 'Europe'}}}},
        'country': {{'iso_code': country[0], 'names': {{'en': country[1], 'de': country[1] + '-de'}}}},
        'city': {{'names': {{'en': city, 'de': city + '-de'}}}},
        'subdivisions': [{{'iso_code': region[0], 'names': {{'en': region[1]}}}}],
        'location': {{'latitude': MmdbF64(lat), 'longitude': MmdbF64(lon), 'time_zone': tz}},
    }}
    if postal:
        data['postal'] = {{'code': postal}}
    return data
w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoIP2-City',
               languages=['en', 'de'], description='sluice test')
w.insert_network(IPSet(['81.2.69.0/24', '2a02:8010::/32']),
                 record({london_country}, {london_city}, ('ENG', 'England'), 51.5142, -0.0931,
                        'Europe/London', 'EC2V'))
w.insert_network(IPSet(['5.9.0.0/16']),
                 record(('DE', 'Germany'), 'Berlin', ('BE', 'Land Berlin'), 52.5244, 13.4105,
                        'Europe/Berlin', None))
w.to_db_file(sys.argv[1])
"#
        );
        let output = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "building the test database needs the PyPI package mmdb-writer \
             (pip install mmdb-writer): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn step(database: &Path, extra: &str) -> GeoIp {
        let text = format!(
            "field = \"ip\"\ndatabase = {:?}\n{extra}",
            database.display().to_string()
        );
        let config: GeoIpConfig = toml::from_str(&text).unwrap();
        config.build().unwrap()
    }

    fn run(step: &mut GeoIp, ip: Value) -> (Vec<Event>, StepContext) {
        let mut ctx = StepContext::new(OnError::DeadLetter);
        let mut event = Event::default();
        event.insert("ip", ip);
        let mut events = vec![event];
        step.process(&mut events, &mut ctx);
        (events, ctx)
    }

    fn text<'a>(event: &'a Event, path: &[&str]) -> Option<&'a str> {
        event.get_path(path).and_then(Value::as_str)
    }

    #[test]
    fn addresses_get_country_city_and_coordinates() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("city.mmdb");
        build_database(&database, false);
        let mut step = step(&database, "");
        let (events, _) = run(&mut step, Value::from("81.2.69.160"));
        let event = &events[0];
        assert_eq!(text(event, &["country"]), Some("GB"));
        assert_eq!(text(event, &["city"]), Some("London"));
        assert_eq!(event.get("latitude"), Some(&Value::Float(51.5142)));
        assert_eq!(event.get("longitude"), Some(&Value::Float(-0.0931)));
        assert_eq!(event.get("timezone"), None, "only the default fields");

        let (events, _) = run(&mut step, Value::from("2a02:8010::1"));
        assert_eq!(text(&events[0], &["city"]), Some("London"), "IPv6");
        let (events, _) = run(&mut step, Value::from(" 5.9.1.2 "));
        assert_eq!(text(&events[0], &["city"]), Some("Berlin"), "trimmed");
    }

    #[test]
    fn every_result_under_a_target_in_the_chosen_language() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("city.mmdb");
        build_database(&database, false);
        let mut step = step(
            &database,
            "target = \"geo\"\nlanguage = \"de\"\nfields = [\"country\", \"country_name\", \
             \"continent\", \"region\", \"region_code\", \"city\", \"postal_code\", \
             \"latitude\", \"longitude\", \"timezone\"]",
        );
        let (events, _) = run(&mut step, Value::from("81.2.69.1"));
        let event = &events[0];
        assert_eq!(text(event, &["geo", "country"]), Some("GB"));
        assert_eq!(
            text(event, &["geo", "country_name"]),
            Some("United Kingdom-de")
        );
        assert_eq!(text(event, &["geo", "continent"]), Some("EU"));
        assert_eq!(text(event, &["geo", "region"]), None, "no German name");
        assert_eq!(text(event, &["geo", "region_code"]), Some("ENG"));
        assert_eq!(text(event, &["geo", "city"]), Some("London-de"));
        assert_eq!(text(event, &["geo", "postal_code"]), Some("EC2V"));
        assert_eq!(text(event, &["geo", "timezone"]), Some("Europe/London"));
        assert_eq!(event.get("country"), None);
        let (events, _) = run(&mut step, Value::from("5.9.0.1"));
        assert_eq!(text(&events[0], &["geo", "postal_code"]), None);
        assert_eq!(text(&events[0], &["geo", "city"]), Some("Berlin-de"));
    }

    #[test]
    fn unknown_addresses_pass_and_non_addresses_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("city.mmdb");
        build_database(&database, false);
        let mut step = step(&database, "");
        let (events, ctx) = run(&mut step, Value::from("10.1.2.3"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].get("country"), None);
        assert_eq!(ctx.rejected(), 0);

        let mut ctx = StepContext::new(OnError::DeadLetter);
        let mut events = vec![Event::default()];
        events[0].insert("path", Value::from("/"));
        let mut bad = Event::default();
        bad.insert("ip", Value::from("not-an-ip"));
        events.push(bad);
        let mut typed = Event::default();
        typed.insert("ip", Value::Int(3));
        events.push(typed);
        step.process(&mut events, &mut ctx);
        assert_eq!(events.len(), 1, "the event without the field passes");
        let dead = ctx.take_dead_letters();
        assert_eq!(dead.len(), 2);
        assert!(
            dead[0].error.contains("not an IP address"),
            "{}",
            dead[0].error
        );
        assert!(dead[1].error.contains("`ip` is int"), "{}", dead[1].error);
    }

    #[test]
    fn a_replaced_database_is_reloaded_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("city.mmdb");
        build_database(&database, false);
        let mut step = step(&database, "");
        let mut ctx = StepContext::new(OnError::DeadLetter);

        // Replaced the way geoipupdate does it: a new file renamed over the old one.
        let fresh = dir.path().join("city.mmdb.new");
        build_database(&fresh, true);
        std::fs::rename(&fresh, &database).unwrap();
        step.last_check = Instant::now() - RELOAD_CHECK_INTERVAL;
        step.tick(Utc::now(), &mut Vec::new(), &mut ctx);
        let (events, _) = run(&mut step, Value::from("81.2.69.160"));
        assert_eq!(text(&events[0], &["city"]), Some("Paris"));

        // A broken replacement keeps the loaded database.
        let broken = dir.path().join("city.mmdb.broken");
        std::fs::write(&broken, b"not a database").unwrap();
        std::fs::rename(&broken, &database).unwrap();
        step.last_check = Instant::now() - RELOAD_CHECK_INTERVAL;
        step.tick(Utc::now(), &mut Vec::new(), &mut ctx);
        let (events, _) = run(&mut step, Value::from("81.2.69.160"));
        assert_eq!(text(&events[0], &["city"]), Some("Paris"));
    }

    #[test]
    fn bad_config_names_the_key_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.mmdb");
        let config: GeoIpConfig = toml::from_str(&format!(
            "field = \"ip\"\ndatabase = {:?}",
            missing.display().to_string()
        ))
        .unwrap();
        let error = config.build().unwrap_err();
        assert_eq!(error.key.as_deref(), Some("database"));
        assert!(
            error.message.contains(&missing.display().to_string()),
            "{}",
            error.message
        );

        let junk = dir.path().join("junk.mmdb");
        std::fs::write(&junk, b"junk").unwrap();
        let config: GeoIpConfig = toml::from_str(&format!(
            "field = \"ip\"\ndatabase = {:?}",
            junk.display().to_string()
        ))
        .unwrap();
        assert_eq!(config.build().unwrap_err().key.as_deref(), Some("database"));

        let database = dir.path().join("city.mmdb");
        build_database(&database, false);
        for (extra, key) in [
            ("fields = [\"city\", \"planet\"]", "fields[1]"),
            ("fields = []", "fields"),
            ("target = \"a..b\"", "target"),
        ] {
            let config: GeoIpConfig = toml::from_str(&format!(
                "field = \"ip\"\ndatabase = {:?}\n{extra}",
                database.display().to_string()
            ))
            .unwrap();
            assert_eq!(
                config.build().unwrap_err().key.as_deref(),
                Some(key),
                "{extra}"
            );
        }
    }
}
