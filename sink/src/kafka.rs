//! Kafka client settings shared by the `kafka` sink and the agent's `kafka` source: the broker
//! list, librdkafka options passed through, and their validation.
//!
//! Both sides talk to Kafka through librdkafka ([`rdkafka`], built from the crate's bundled
//! sources). Its options are strings keyed by librdkafka's own names (`linger.ms`,
//! `socket.timeout.ms`, …); the components set what they own themselves (`bootstrap.servers`,
//! and for the sink `acks` and idempotence, for the source the group and commit settings), and
//! `librdkafka_options` may override anything else. Without the `kafka` cargo feature the config
//! types still parse, so a config naming a kafka component is refused at validation with a clear
//! message instead of an unknown-kind error.

use std::collections::BTreeMap;

use crate::BuildError;

/// What a kafka component says when sluice was built without the `kafka` feature.
pub const FEATURE_MISSING: &str = "this sluice was built without the `kafka` feature \
     (librdkafka); build it with default features or `--features kafka`";

/// Whether this build can run kafka components.
pub const ENABLED: bool = cfg!(feature = "kafka");

/// Checks `brokers` (the key `key`): at least one, each `host:port`.
///
/// # Errors
/// A [`BuildError`] at `key` (or `key[i]`) saying what is wrong.
pub fn validate_brokers(key: &str, brokers: &[String]) -> Result<(), BuildError> {
    if brokers.is_empty() {
        return Err(BuildError::at(
            key,
            "must list at least one broker, such as [\"127.0.0.1:9092\"]",
        ));
    }
    for (index, broker) in brokers.iter().enumerate() {
        let valid = broker
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid || broker.contains(['/', ',', ' ']) {
            return Err(BuildError::at(
                format!("{key}[{index}]"),
                format!("expected `host:port`, such as \"127.0.0.1:9092\", found {broker:?}"),
            ));
        }
    }
    Ok(())
}

/// Checks `librdkafka_options` against librdkafka itself (unknown names and bad values), except
/// the options in `owned`, which the component sets from its own keys and which may not be
/// given here. Without the `kafka` feature only `owned` is checked.
///
/// # Errors
/// A [`BuildError`] at `librdkafka_options.<name>` with librdkafka's message.
pub fn validate_options(
    options: &BTreeMap<String, String>,
    owned: &[(&str, &str)],
) -> Result<(), BuildError> {
    for (name, value) in options {
        let key = format!("librdkafka_options.\"{name}\"");
        if let Some((_, instead)) = owned.iter().find(|(owned, _)| owned == name) {
            return Err(BuildError::at(
                key,
                format!("set by the component: use `{instead}` instead"),
            ));
        }
        #[cfg(feature = "kafka")]
        {
            let mut config = rdkafka::ClientConfig::new();
            config.set(name, value);
            if let Err(error) = config.create_native_config() {
                return Err(BuildError::at(key, librdkafka_message(&error)));
            }
        }
        #[cfg(not(feature = "kafka"))]
        let _ = value;
    }
    Ok(())
}

/// A librdkafka client config: `bootstrap.servers` from `brokers`, then `defaults`, then the
/// user's `options` over them.
#[cfg(feature = "kafka")]
pub fn client_config(
    brokers: &[String],
    defaults: &[(&str, &str)],
    options: &BTreeMap<String, String>,
) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", brokers.join(","));
    for (name, value) in defaults {
        config.set(*name, *value);
    }
    for (name, value) in options {
        config.set(name, value);
    }
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    config
}

/// librdkafka's message for a config error, without the crate's wrapping.
#[cfg(feature = "kafka")]
pub fn librdkafka_message(error: &rdkafka::error::KafkaError) -> String {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, message, _, _) => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_must_be_host_and_port() {
        validate_brokers(
            "brokers",
            &["127.0.0.1:9092".into(), "kafka-1:19092".into()],
        )
        .unwrap();
        assert_eq!(
            validate_brokers("brokers", &[]).unwrap_err().key.as_deref(),
            Some("brokers")
        );
        for bad in ["127.0.0.1", "host:port", ":9092", "a:1,b:2", "kafka://h:1"] {
            let error = validate_brokers("brokers", &["h:1".into(), bad.into()]).unwrap_err();
            assert_eq!(error.key.as_deref(), Some("brokers[1]"), "{bad}");
            assert!(error.message.contains("host:port"), "{error}");
        }
    }

    #[test]
    fn owned_options_point_to_the_component_key() {
        let options = BTreeMap::from([("bootstrap.servers".to_owned(), "h:1".to_owned())]);
        let error = validate_options(&options, &[("bootstrap.servers", "brokers")]).unwrap_err();
        assert_eq!(
            error.key.as_deref(),
            Some("librdkafka_options.\"bootstrap.servers\"")
        );
        assert!(error.message.contains("use `brokers`"), "{error}");
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn librdkafka_checks_names_and_values() {
        let good = BTreeMap::from([
            ("linger.ms".to_owned(), "5".to_owned()),
            ("socket.timeout.ms".to_owned(), "10000".to_owned()),
        ]);
        validate_options(&good, &[]).unwrap();
        let unknown = BTreeMap::from([("linger.mss".to_owned(), "5".to_owned())]);
        let error = validate_options(&unknown, &[]).unwrap_err();
        assert_eq!(
            error.key.as_deref(),
            Some("librdkafka_options.\"linger.mss\"")
        );
        assert!(error.message.contains("linger.mss"), "{error}");
        let bad_value = BTreeMap::from([("linger.ms".to_owned(), "soon".to_owned())]);
        let error = validate_options(&bad_value, &[]).unwrap_err();
        assert_eq!(
            error.key.as_deref(),
            Some("librdkafka_options.\"linger.ms\"")
        );
    }
}
