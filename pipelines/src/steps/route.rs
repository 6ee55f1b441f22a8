//! The `route` step: sends events to other topics by condition.
//!
//! ```toml
//! steps = [{ type = "route", mode = "first", routes = [
//!   { condition = 'status >= 500', topic = "web.errors" },
//!   { condition = 'agent ~ "(?i)bot"', topic = "web.bots" },
//! ] }]
//! ```
//!
//! Each event is checked against the routes in order. With `mode = "first"` (the default) it goes
//! to the topic of the first route whose condition holds; with `mode = "all"` it goes to every
//! matching route's topic (a copy each). An event that matches no route continues down the
//! pipeline to its output: the output is the default route. With `copy = true` every event also
//! continues down the pipeline, matched or not (tap errors off into a topic of their own and
//! still count them downstream). Routed events leave the pipeline
//! through [`StepContext::route`]; the agent publishes them to their topics, which
//! [`StepConfig::output_topics`](crate::StepConfig::output_topics) lists for wiring.

use std::sync::Arc;

use crate::condition::Condition;
use crate::event::Event;
use crate::step::{BuildError, Step, StepContext};

/// Config of the `route` step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The routes, checked in order.
    pub routes: Vec<RouteEntry>,
    /// Whether an event goes to the first matching route or to all of them.
    #[serde(default)]
    pub mode: RouteMode,
    /// Whether routed events also continue down the pipeline (default false: they leave it).
    #[serde(default)]
    pub copy: bool,
}

/// One route: a condition and the topic that receives the events it holds for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Which events take this route.
    pub condition: String,
    /// The topic they go to.
    pub topic: String,
}

/// How many routes an event may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMode {
    /// The first matching route only.
    #[default]
    First,
    /// Every matching route.
    All,
}

impl RouteConfig {
    /// The distinct topics of the routes, in order of first appearance.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            if !topics.contains(&route.topic) {
                topics.push(route.topic.clone());
            }
        }
        topics
    }

    /// Parses the conditions.
    ///
    /// # Errors
    /// A [`BuildError`] at `routes` when there are none, at `routes[<i>].condition` for a bad
    /// condition (with a caret), at `routes[<i>].topic` for an empty topic name.
    pub fn build(&self) -> Result<Route, BuildError> {
        if self.routes.is_empty() {
            return Err(BuildError::at(
                "routes",
                "`routes` is empty: give at least one",
            ));
        }
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, route) in self.routes.iter().enumerate() {
            let condition = Condition::parse(&route.condition).map_err(|error| {
                BuildError::at(format!("routes[{i}].condition"), error.to_string())
            })?;
            if route.topic.trim().is_empty() {
                return Err(BuildError::at(
                    format!("routes[{i}].topic"),
                    "the topic name is empty",
                ));
            }
            routes.push((condition, Arc::from(route.topic.as_str())));
        }
        Ok(Route {
            routes,
            mode: self.mode,
            copy: self.copy,
            matched: Vec::new(),
            input: Vec::new(),
        })
    }
}

/// The `route` step, built from a [`RouteConfig`].
#[derive(Debug)]
pub struct Route {
    routes: Vec<(Condition, Arc<str>)>,
    mode: RouteMode,
    copy: bool,
    /// Scratch: the routes an event matched (`mode = "all"`).
    matched: Vec<usize>,
    input: Vec<Event>,
}

impl Step for Route {
    fn process(&mut self, events: &mut Vec<Event>, ctx: &mut StepContext) {
        let mut input = std::mem::take(&mut self.input);
        std::mem::swap(events, &mut input);
        for event in input.drain(..) {
            match self.mode {
                RouteMode::First => {
                    match self
                        .routes
                        .iter()
                        .find(|(condition, _)| condition.matches(&event))
                    {
                        Some((_, topic)) if self.copy => {
                            ctx.route(topic, event.clone());
                            events.push(event);
                        }
                        Some((_, topic)) => ctx.route(topic, event),
                        None => events.push(event),
                    }
                }
                RouteMode::All => {
                    self.matched.clear();
                    self.matched.extend(
                        self.routes
                            .iter()
                            .enumerate()
                            .filter(|(_, (condition, _))| condition.matches(&event))
                            .map(|(index, _)| index),
                    );
                    let Some((&last, rest)) = self.matched.split_last() else {
                        events.push(event);
                        continue;
                    };
                    for &index in rest {
                        ctx.route(&self.routes[index].1, event.clone());
                    }
                    if self.copy {
                        ctx.route(&self.routes[last].1, event.clone());
                        events.push(event);
                    } else {
                        ctx.route(&self.routes[last].1, event);
                    }
                }
            }
        }
        self.input = input;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::OnError;

    fn route(toml_text: &str) -> Route {
        toml::from_str::<RouteConfig>(toml_text)
            .unwrap()
            .build()
            .unwrap()
    }

    fn event(status: i64, agent: &str) -> Event {
        let mut event = Event::default();
        event.insert("status", status);
        event.insert("agent", agent);
        event
    }

    const ROUTES: &str = "routes = [\n\
        { condition = 'status >= 500', topic = \"web.errors\" },\n\
        { condition = 'agent ~ \"(?i)bot\"', topic = \"web.bots\" },\n\
        { condition = 'status == 503', topic = \"web.unavailable\" },\n]";

    #[test]
    fn copy_keeps_routed_events_in_the_pipeline() {
        for mode in ["first", "all"] {
            let mut step = route(&format!("copy = true\nmode = \"{mode}\"\n{ROUTES}"));
            let mut events = vec![event(503, "curl"), event(200, "curl")];
            let mut ctx = StepContext::new(OnError::DeadLetter);
            step.process(&mut events, &mut ctx);
            let kept: Vec<i64> = events
                .iter()
                .map(|e| e.get("status").and_then(crate::Value::as_int).unwrap())
                .collect();
            assert_eq!(kept, [503, 200], "{mode}: every event continues");
            let routed = ctx.take_routed();
            assert!(
                routed
                    .iter()
                    .all(|(_, e)| e.get("status") == Some(&crate::Value::Int(503))),
                "{mode}"
            );
            assert!(
                routed.iter().any(|(topic, _)| &**topic == "web.errors"),
                "{mode}"
            );
        }
    }

    fn statuses(events: &[(Arc<str>, Event)]) -> Vec<(String, i64)> {
        events
            .iter()
            .map(|(topic, e)| {
                (
                    topic.to_string(),
                    e.get("status").and_then(|v| v.as_int()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn first_match_wins_and_the_rest_continue() {
        let mut step = route(ROUTES);
        let mut events = vec![
            event(200, "Mozilla"),
            event(503, "Googlebot"),
            event(301, "bingbot"),
            event(500, "x"),
        ];
        let mut ctx = StepContext::new(OnError::DeadLetter);
        step.process(&mut events, &mut ctx);
        assert_eq!(events, vec![event(200, "Mozilla")]);
        assert_eq!(
            statuses(&ctx.take_routed()),
            [
                ("web.errors".to_owned(), 503),
                ("web.bots".to_owned(), 301),
                ("web.errors".to_owned(), 500)
            ]
        );
        assert_eq!(
            ctx.take_counts(),
            (0, 0),
            "routing is neither an error nor a drop"
        );
    }

    #[test]
    fn all_mode_copies_to_every_match() {
        let mut step = route(&format!("mode = \"all\"\n{ROUTES}"));
        let mut events = vec![event(503, "Googlebot"), event(200, "curl")];
        let mut ctx = StepContext::new(OnError::DeadLetter);
        step.process(&mut events, &mut ctx);
        assert_eq!(events.len(), 1);
        assert_eq!(
            statuses(&ctx.take_routed()),
            [
                ("web.errors".to_owned(), 503),
                ("web.bots".to_owned(), 503),
                ("web.unavailable".to_owned(), 503)
            ]
        );
    }

    #[test]
    fn topics_and_build_errors() {
        let config: RouteConfig = toml::from_str(&format!("{ROUTES}\n")).unwrap();
        assert_eq!(
            config.topics(),
            ["web.errors", "web.bots", "web.unavailable"]
        );
        let dup: RouteConfig = toml::from_str(
            "routes = [{ condition = 'a', topic = \"t\" }, { condition = 'b', topic = \"t\" }]",
        )
        .unwrap();
        assert_eq!(dup.topics(), ["t"]);
        let error = toml::from_str::<RouteConfig>(
            "routes = [{ condition = 'a', topic = \"t\" }, { condition = 'a ==', topic = \"u\" }]",
        )
        .unwrap()
        .build()
        .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("routes[1].condition"));
        let error = toml::from_str::<RouteConfig>("routes = [{ condition = 'a', topic = \" \" }]")
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("routes[0].topic"));
        let error = toml::from_str::<RouteConfig>("routes = []")
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("routes"));
        assert!(toml::from_str::<RouteConfig>("routes = []\nmode = \"some\"").is_err());
    }
}
