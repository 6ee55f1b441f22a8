//! The `kafka` source's config and its validation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use sluice_pipelines::{BuildError, FieldName};
use sluice_sink::kafka::{FEATURE_MISSING, validate_brokers, validate_options};
use sluice_sink::units::HumanDuration;

use crate::sources::body::Decoding;

/// librdkafka options the source sets from its own keys.
pub(super) const OWNED_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("group.id", "group_id"),
    ("auto.offset.reset", "start_at"),
    ("enable.auto.commit", "commit_interval"),
    ("enable.auto.offset.store", "commit_interval"),
];

/// The config of the `kafka` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The Kafka topics to read (or `topic_pattern`).
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression over topic names, starting with `^` (or `topics`).
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// The consumer group.
    pub group_id: String,
    /// Where a group without committed offsets starts; default `latest`.
    #[serde(default)]
    pub start_at: KafkaStartAt,
    /// How a message's payload becomes events; default `auto`.
    #[serde(default)]
    pub decoding: Decoding,
    /// How often safe offsets are committed; default `1s`.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// The field for the message's Kafka topic (`""`: none); default `kafka_topic`.
    #[serde(default = "default_topic_field")]
    pub topic_field: String,
    /// The field for its partition; default `kafka_partition`.
    #[serde(default = "default_partition_field")]
    pub partition_field: String,
    /// The field for its offset; default `kafka_offset`.
    #[serde(default = "default_offset_field")]
    pub offset_field: String,
    /// The field for its key (absent when it has none); default `kafka_key`.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// The field for its timestamp; default `kafka_timestamp`.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// Further librdkafka consumer options, passed through.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

/// Where a consumer group without committed offsets starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStartAt {
    /// The oldest message the partition keeps.
    Earliest,
    /// Only messages produced from now on.
    #[default]
    Latest,
}

fn default_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_topic_field() -> String {
    "kafka_topic".into()
}

fn default_partition_field() -> String {
    "kafka_partition".into()
}

fn default_offset_field() -> String {
    "kafka_offset".into()
}

fn default_key_field() -> String {
    "kafka_key".into()
}

fn default_timestamp_field() -> String {
    "kafka_timestamp".into()
}

/// A validated `kafka` source config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bootstrap brokers.
    pub brokers: Vec<String>,
    /// What to subscribe to: topic names, or one `^pattern`.
    pub subscription: Vec<String>,
    /// The consumer group.
    pub group_id: String,
    /// A new group's start.
    pub start_at: KafkaStartAt,
    /// Payload decoding.
    pub decoding: Decoding,
    /// How often safe offsets are committed.
    pub commit_interval: Duration,
    /// The fields added, each `None` when turned off.
    pub fields: MessageFields,
    /// librdkafka options passed through.
    pub librdkafka_options: BTreeMap<String, String>,
}

/// The names of the fields a message's Kafka metadata goes to.
#[derive(Debug, Clone, Default)]
pub struct MessageFields {
    /// The topic.
    pub topic: Option<FieldName>,
    /// The partition.
    pub partition: Option<FieldName>,
    /// The offset.
    pub offset: Option<FieldName>,
    /// The key.
    pub key: Option<FieldName>,
    /// The timestamp.
    pub timestamp: Option<FieldName>,
}

impl KafkaConfig {
    /// Checks every key (no I/O). Without the `kafka` feature, says so.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key.
    pub fn validate(&self) -> Result<Settings, BuildError> {
        validate_brokers("brokers", &self.brokers)?;
        let subscription = match (&self.topics[..], &self.topic_pattern) {
            ([], None) => {
                return Err(BuildError::at(
                    "topics",
                    "name the Kafka topics to read (`topics = [\"web-view\"]`) or a \
                     `topic_pattern`",
                ));
            }
            ([_, ..], Some(_)) => {
                return Err(BuildError::at(
                    "topic_pattern",
                    "give `topics` or `topic_pattern`, not both",
                ));
            }
            (topics, None) => {
                for (index, topic) in topics.iter().enumerate() {
                    let valid = !topic.is_empty()
                        && topic.len() <= 249
                        && topic
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                    if !valid {
                        return Err(BuildError::at(
                            format!("topics[{index}]"),
                            format!(
                                "{topic:?} is not a Kafka topic name (ASCII letters, digits, \
                                 `.`, `_` and `-`; use `topic_pattern` for a pattern)"
                            ),
                        ));
                    }
                }
                topics.to_vec()
            }
            ([], Some(pattern)) => {
                if !pattern.starts_with('^') {
                    return Err(BuildError::at(
                        "topic_pattern",
                        format!(
                            "{pattern:?} must start with `^`: librdkafka takes only such \
                             names as patterns"
                        ),
                    ));
                }
                regex::Regex::new(pattern)
                    .map_err(|error| BuildError::at("topic_pattern", error.to_string()))?;
                vec![pattern.clone()]
            }
        };
        if self.group_id.is_empty() {
            return Err(BuildError::at("group_id", "must not be empty"));
        }
        if self.commit_interval.get() < Duration::from_millis(10) {
            return Err(BuildError::at("commit_interval", "must be at least 10ms"));
        }
        validate_options(&self.librdkafka_options, OWNED_OPTIONS)?;
        if !sluice_sink::kafka::ENABLED {
            return Err(BuildError::at("type", FEATURE_MISSING));
        }
        let field = |name: &str| (!name.is_empty()).then(|| FieldName::new(name));
        Ok(Settings {
            brokers: self.brokers.clone(),
            subscription,
            group_id: self.group_id.clone(),
            start_at: self.start_at,
            decoding: self.decoding,
            commit_interval: self.commit_interval.get(),
            fields: MessageFields {
                topic: field(&self.topic_field),
                partition: field(&self.partition_field),
                offset: field(&self.offset_field),
                key: field(&self.key_field),
                timestamp: field(&self.timestamp_field),
            },
            librdkafka_options: self.librdkafka_options.clone(),
        })
    }

    /// Builds the source (the consumer is created when it runs).
    ///
    /// # Errors
    /// As for [`KafkaConfig::validate`].
    #[cfg(feature = "kafka")]
    pub fn build(&self) -> Result<super::Kafka, BuildError> {
        Ok(super::Kafka::new(self.validate()?))
    }

    /// Without the `kafka` feature: refuses, saying so.
    ///
    /// # Errors
    /// Always.
    #[cfg(not(feature = "kafka"))]
    pub fn build(&self) -> Result<Box<dyn crate::sources::Source>, BuildError> {
        self.validate()?;
        Err(BuildError::at("type", FEATURE_MISSING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> KafkaConfig {
        serde_json::from_value(value).unwrap()
    }

    fn error_key(extra: serde_json::Value) -> String {
        let mut value = json!({"brokers": ["127.0.0.1:9092"], "topics": ["web"], "group_id": "g"});
        for (key, item) in extra.as_object().unwrap() {
            value[key] = item.clone();
        }
        parse(value).validate().unwrap_err().key.unwrap()
    }

    #[test]
    fn config_parses_with_defaults() {
        let config = parse(json!({"brokers": ["h:1"], "topics": ["web-view"], "group_id": "g"}));
        assert_eq!(config.start_at, KafkaStartAt::Latest);
        assert_eq!(config.commit_interval.get(), Duration::from_secs(1));
        if sluice_sink::kafka::ENABLED {
            let settings = config.validate().unwrap();
            assert_eq!(settings.subscription, ["web-view"]);
            assert_eq!(
                settings.fields.partition.as_ref().map(FieldName::as_str),
                Some("kafka_partition")
            );
            let pattern = parse(json!({
                "brokers": ["h:1"], "topic_pattern": "^web-.*", "group_id": "g",
                "start_at": "earliest", "key_field": "", "decoding": "text",
            }))
            .validate()
            .unwrap();
            assert_eq!(pattern.subscription, ["^web-.*"]);
            assert!(pattern.fields.key.is_none());
            assert_eq!(pattern.start_at, KafkaStartAt::Earliest);
        }
    }

    #[test]
    fn bad_keys_are_named() {
        assert_eq!(error_key(json!({"brokers": []})), "brokers");
        assert_eq!(error_key(json!({"topics": []})), "topics");
        assert_eq!(error_key(json!({"topics": ["web view"]})), "topics[0]");
        assert_eq!(error_key(json!({"topic_pattern": "^web"})), "topic_pattern");
        assert_eq!(
            error_key(json!({"topics": [], "topic_pattern": "web.*"})),
            "topic_pattern"
        );
        assert_eq!(
            error_key(json!({"topics": [], "topic_pattern": "^web(["})),
            "topic_pattern"
        );
        assert_eq!(error_key(json!({"group_id": ""})), "group_id");
        assert_eq!(
            error_key(json!({"commit_interval": "1ms"})),
            "commit_interval"
        );
        assert_eq!(
            error_key(json!({"librdkafka_options": {"group.id": "other"}})),
            "librdkafka_options.\"group.id\""
        );
        assert!(
            serde_json::from_value::<KafkaConfig>(json!({
                "brokers": ["h:1"], "topics": ["t"], "group_id": "g", "start_at": "middle"
            }))
            .is_err()
        );
    }
}
