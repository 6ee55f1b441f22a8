//! The `filter` step: keeps the events a [condition](crate::condition) holds for.
//!
//! ```toml
//! steps = [{ type = "filter", condition = 'status >= 400 or agent ~ "(?i)bot"' }]
//! ```
//!
//! Events that do not match are not errors: they are dropped and counted with
//! [`StepContext::count_dropped`], so operators can see how much each pipeline discards.

use crate::condition::Condition;
use crate::event::Event;
use crate::step::{BuildError, Step, StepContext};

/// Config of the `filter` step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The condition an event must meet to be kept.
    pub condition: String,
}

impl FilterConfig {
    /// Parses and checks the condition.
    ///
    /// # Errors
    /// A [`BuildError`] at `condition` whose message is the expression with a caret under the
    /// problem.
    pub fn build(&self) -> Result<Filter, BuildError> {
        Condition::parse(&self.condition)
            .map(|condition| Filter { condition })
            .map_err(|error| BuildError::at("condition", error.to_string()))
    }
}

/// The `filter` step, built from a [`FilterConfig`].
#[derive(Debug)]
pub struct Filter {
    condition: Condition,
}

impl Step for Filter {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        let before = events.len();
        events.retain(|event| self.condition.matches(event));
        let dropped = before - events.len();
        if dropped > 0 {
            ctx.count_dropped(dropped as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;
    use crate::step::OnError;

    fn event(status: i64, agent: &str) -> Event {
        let mut event = Event::default();
        event.insert("status", status);
        event.insert("agent", agent);
        event
    }

    #[test]
    fn keeps_matching_events_in_order_and_counts_the_rest() {
        let config: FilterConfig =
            toml::from_str(r#"condition = 'status >= 400 or agent ~ "(?i)bot"'"#).unwrap();
        let mut filter = config.build().unwrap();
        let mut events = vec![
            event(200, "Mozilla"),
            event(404, "Mozilla"),
            event(200, "Googlebot/2.1"),
            event(301, "curl"),
            event(503, "bingbot"),
        ];
        let mut ctx = StepContext::new(OnError::DeadLetter);
        filter.process(&mut events, &mut ctx);
        let kept: Vec<(i64, &str)> = events
            .iter()
            .map(|e| {
                (
                    e.get("status").and_then(Value::as_int).unwrap(),
                    e.get("agent").and_then(Value::as_str).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kept,
            [(404, "Mozilla"), (200, "Googlebot/2.1"), (503, "bingbot")]
        );
        assert_eq!(ctx.take_counts(), (0, 2), "dropped, not rejected");
        assert!(ctx.take_dead_letters().is_empty());

        let mut empty = Vec::new();
        filter.process(&mut empty, &mut ctx);
        assert_eq!(ctx.take_counts(), (0, 0));
    }

    #[test]
    fn a_bad_condition_is_a_build_error_with_a_caret() {
        let config = FilterConfig {
            condition: "status >= 400 and agnet ~~ \"bot\"".to_owned(),
        };
        let error = config.build().unwrap_err();
        assert_eq!(error.key.as_deref(), Some("condition"));
        assert_eq!(
            error.message,
            "expected a value, found `~`\nstatus >= 400 and agnet ~~ \"bot\"\n                         ^"
        );
        assert!(toml::from_str::<FilterConfig>("condition = 'a'\nextra = 1").is_err());
    }
}
