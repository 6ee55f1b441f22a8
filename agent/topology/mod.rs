//! The topology: the running graph of sources, topics, pipelines and sinks.
//!
//! [`Topology::build`] turns a validated [`Config`] into live parts in an order that loses
//! nothing: topics first, then every subscription (so no consumer misses the first events), then
//! every producer (so no topic looks finished before its writers exist), then the sink and step
//! instances. [`Topology::start`] spawns one task per source, per pipeline worker and per sink
//! worker, and [`RunningTopology::wait`] runs the graph until it drains by itself (every source
//! finite and finished) or a shutdown signal arrives.
//!
//! Shutdown drains: sources stop reading and drop their producers; each topic, once its producers
//! are gone and its subscriptions have acknowledged everything, ends its subscriptions; pipelines
//! flush and drop their own producers; and so on down to the sinks, which close. If that takes
//! longer than `shutdown_timeout` (a store that stays down), the remaining tasks are aborted and
//! their unacknowledged events stay unacknowledged — sources with checkpoints read them again on
//! the next start.

mod pipeline;
mod sink;
pub mod status;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use sluice_pipelines::{BuildError, OnError, SourceId};
use sluice_sink::SinkContext;
use sluice_sink::driver::Driver;
use tokio::task::JoinSet;

use crate::config::{
    Config, DEFAULT_DEAD_LETTER_TOPIC, SubscriptionDef, TopicConfig, TopicDef, TopicStorage,
};
use crate::metrics::{Metrics, Role};
use crate::rejections::Destination;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::sources::{Source, SourceContext, SourceError};
use crate::topic::{Subscription, SubscriptionSettings, Topic};

pub use pipeline::{NamedStep, PipelineWorker, dead_letter_event, run_steps};
pub use sink::{SinkRunError, SinkRunner};

/// Why a topology could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{component}: {source}")]
pub struct TopologyError {
    /// `sources.x`, `pipelines.y.steps[0]`, `sinks.z`.
    pub component: String,
    /// What went wrong.
    #[source]
    pub source: BuildError,
}

/// How often disk topics run their retention.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// The directory of disk topic `name` under `data_dir`.
pub fn disk_topic_dir(data_dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    data_dir.join("topics").join(name)
}

/// Opens topic `name` as `def` says: in memory, or recovering its disk log.
fn open_topic(
    name: &str,
    def: &TopicConfig,
    data_dir: &std::path::Path,
) -> Result<Topic, TopologyError> {
    match &def.storage {
        TopicStorage::Memory => Ok(Topic::in_memory(name, def.settings.clone())),
        TopicStorage::Disk(disk) => {
            let dir = disk_topic_dir(data_dir, name);
            Topic::on_disk(name, def.settings.clone(), &dir, disk.clone()).map_err(|error| {
                TopologyError {
                    component: format!("topics.{name}"),
                    source: BuildError::new(format!(
                        "cannot open the disk topic in {}: {error}",
                        dir.display()
                    )),
                }
            })
        }
    }
}

/// A built, not yet started, graph.
pub struct Topology {
    topics: IndexMap<String, Topic>,
    metrics: Arc<Metrics>,
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
    shutdown_timeout: Duration,
    sources: Vec<(String, Box<dyn Source>, SourceContext)>,
    pipelines: Vec<(String, PipelineWorker)>,
    sinks: Vec<(String, SinkRunner)>,
}

impl Topology {
    /// Builds every part of the graph.
    ///
    /// # Errors
    /// A [`TopologyError`] naming the component that cannot be built (a file sink whose directory
    /// cannot be created, a step config that does not build).
    pub async fn build(config: &Config) -> Result<Self, TopologyError> {
        let metrics = Arc::new(Metrics::new());
        let (trigger, shutdown) = shutdown::channel();

        let mut topics: IndexMap<String, Topic> = IndexMap::new();
        for (name, def) in &config.topics {
            topics.insert(name.clone(), open_topic(name, def, &config.data_dir)?);
        }
        // Sinks send permanently rejected batches to the default dead-letter topic (validation
        // declares it; a config built by hand may not have).
        if !config.sinks.is_empty() && !topics.contains_key(DEFAULT_DEAD_LETTER_TOPIC) {
            let def = TopicDef::default().resolve(true);
            let topic = open_topic(DEFAULT_DEAD_LETTER_TOPIC, &def, &config.data_dir)?;
            topics.insert(DEFAULT_DEAD_LETTER_TOPIC.to_owned(), topic);
        }
        let topics = topics;
        let topic = |name: &str| -> Result<&Topic, TopologyError> {
            topics.get(name).ok_or_else(|| TopologyError {
                component: format!("topics.{name}"),
                source: BuildError::new("topic is not defined (the config was not validated)"),
            })
        };

        // Subscriptions before producers: nobody misses the first events.
        let subscribe =
            |name: &str, def: &SubscriptionDef| -> Result<Subscription, TopologyError> {
                Ok(topic(&def.input)?.subscribe(SubscriptionSettings {
                    name: name.to_owned(),
                    blocking: def.blocking,
                    ack_timeout: def.ack_timeout,
                    start_at: def.start_at,
                }))
            };
        let mut pipeline_subs = HashMap::new();
        for (name, def) in &config.pipelines {
            pipeline_subs.insert(name.clone(), subscribe(name, &def.subscription)?);
        }
        let mut sink_subs = HashMap::new();
        for (name, def) in &config.sinks {
            sink_subs.insert(name.clone(), subscribe(name, &def.subscription)?);
        }

        // Producers next: no topic looks finished before its writers exist.
        let mut sources = Vec::new();
        for (index, (name, def)) in config.sources.iter().enumerate() {
            let source = def.config.build().map_err(|source| TopologyError {
                component: format!("sources.{name}"),
                source,
            })?;
            let source_metrics = metrics.register(name, Role::Source);
            let dead_letter_topic = topics.get(DEFAULT_DEAD_LETTER_TOPIC);
            source_metrics.rejections.set_destination(
                match (def.config.refuses_bad_input(), dead_letter_topic) {
                    (Some(refused), _) => Destination::Dropped(refused),
                    (None, Some(_)) => Destination::Topic(DEFAULT_DEAD_LETTER_TOPIC.to_owned()),
                    (None, None) => Destination::Dropped("no dead-letter topic is configured"),
                },
            );
            let ctx = SourceContext {
                name: name.clone(),
                id: SourceId(index as u32),
                output: topic(&def.topic)?.producer(),
                shutdown: shutdown.clone(),
                data_dir: config.data_dir.clone(),
                metrics: source_metrics,
                dead_letter: topics
                    .get(DEFAULT_DEAD_LETTER_TOPIC)
                    .map(|topic| topic.producer()),
            };
            sources.push((name.clone(), source, ctx));
        }

        let mut pipelines = Vec::new();
        for (name, def) in &config.pipelines {
            let output = topic(&def.output)?.producer();
            let dead_letter = topic(&def.dead_letter)?.producer();
            let mut routes = HashMap::new();
            for step in &def.steps {
                for name in step.output_topics() {
                    routes.insert(Arc::<str>::from(name.as_str()), topic(&name)?.producer());
                }
            }
            let component_metrics = metrics.register(name, Role::Pipeline);
            component_metrics
                .rejections
                .set_destination(match def.on_error {
                    OnError::DeadLetter => Destination::Topic(def.dead_letter.clone()),
                    OnError::Drop => Destination::Dropped("on_error = \"drop\""),
                });
            let shared_name: Arc<str> = Arc::from(name.as_str());
            for _ in 0..def.subscription.workers.max(1) {
                let mut steps = Vec::with_capacity(def.steps.len());
                for (index, step) in def.steps.iter().enumerate() {
                    let built = step.build().map_err(|source| TopologyError {
                        component: format!("pipelines.{name}.steps[{index}]"),
                        source,
                    })?;
                    steps.push(NamedStep {
                        name: Arc::from(format!(
                            "steps[{index}] ({})",
                            sluice_pipelines::ComponentKind::kind(step)
                        )),
                        step: built,
                    });
                }
                let input = pipeline_subs
                    .get(name)
                    .cloned()
                    .ok_or_else(|| TopologyError {
                        component: format!("pipelines.{name}"),
                        source: BuildError::new("missing subscription"),
                    })?;
                pipelines.push((
                    name.clone(),
                    PipelineWorker {
                        name: shared_name.clone(),
                        input,
                        steps,
                        output: output.clone(),
                        dead_letter: dead_letter.clone(),
                        routes: routes.clone(),
                        on_error: def.on_error,
                        flush_on_shutdown: def.flush_on_shutdown,
                        metrics: component_metrics.clone(),
                        shutdown: shutdown.clone(),
                    },
                ));
            }
        }

        let finite = config.sources.values().all(|def| def.config.is_finite());
        let mut sinks = Vec::new();
        for (name, def) in &config.sinks {
            let component_metrics = metrics.register(name, Role::Sink);
            let context = SinkContext {
                name: name.clone(),
                data_dir: config.data_dir.clone(),
            };
            let dead_letter = if def.subscription.input == DEFAULT_DEAD_LETTER_TOPIC {
                component_metrics
                    .rejections
                    .set_destination(Destination::Dropped(
                        "the sink reads the dead-letter topic itself",
                    ));
                None
            } else {
                component_metrics
                    .rejections
                    .set_destination(Destination::Topic(DEFAULT_DEAD_LETTER_TOPIC.to_owned()));
                Some(topic(DEFAULT_DEAD_LETTER_TOPIC)?.producer())
            };
            let built = def
                .config
                .build(&context)
                .await
                .map_err(|source| TopologyError {
                    component: format!("sinks.{name}"),
                    source,
                })?;
            let (driver_input, mut driver) = Driver::new(name.as_str(), built, def.driver.clone());
            if finite {
                // Nobody waits for a refusing store to be fixed: the run ends with an error.
                driver.finite_run();
            }
            let input = sink_subs.get(name).cloned().ok_or_else(|| TopologyError {
                component: format!("sinks.{name}"),
                source: BuildError::new("missing subscription"),
            })?;
            sinks.push((
                name.clone(),
                SinkRunner {
                    name: Arc::from(name.as_str()),
                    input,
                    workers: def.subscription.workers,
                    driver,
                    driver_input,
                    dead_letter,
                    metrics: component_metrics,
                },
            ));
        }

        Ok(Topology {
            topics,
            metrics,
            trigger,
            shutdown,
            shutdown_timeout: config.shutdown_timeout,
            sources,
            pipelines,
            sinks,
        })
    }

    /// The topics, by name.
    pub fn topics(&self) -> &IndexMap<String, Topic> {
        &self.topics
    }

    /// Every component's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs the healthcheck of every sink that has it on, all at once, before anything starts
    /// (`--require-healthy`); each failure is logged as the drivers log it. Returns the failed
    /// ones as (`sinks.<name>`, reason).
    pub async fn check_sinks(&mut self) -> Vec<(String, String)> {
        // Each check on a task of its own (they may each take up to the healthcheck timeout),
        // the runners handed back in order.
        let checks: Vec<_> = self
            .sinks
            .drain(..)
            .map(|(name, mut runner)| {
                tokio::spawn(async move {
                    let result = if runner.driver.healthcheck_enabled() {
                        runner.driver.healthcheck().await.map_err(|e| e.to_string())
                    } else {
                        Ok(())
                    };
                    (name, runner, result)
                })
            })
            .collect();
        let mut failed = Vec::new();
        for check in checks {
            match check.await {
                Ok((name, runner, result)) => {
                    if let Err(error) = result {
                        failed.push((format!("sinks.{name}"), error));
                    }
                    self.sinks.push((name, runner));
                }
                Err(error) => {
                    failed.push(("sinks".to_owned(), format!("healthcheck task: {error}")))
                }
            }
        }
        failed
    }

    /// Spawns every task. Must be called inside a tokio runtime.
    pub fn start(self) -> RunningTopology {
        let mut tasks = JoinSet::new();
        let mut names = HashMap::new();
        for (name, worker) in self.sinks {
            let id = tasks.spawn(async move { worker.run().await.map_err(ComponentError::from) });
            names.insert(id.id(), format!("sinks.{name}"));
        }
        for (name, worker) in self.pipelines {
            let id = tasks.spawn(async move {
                worker.run().await;
                Ok(())
            });
            names.insert(id.id(), format!("pipelines.{name}"));
        }
        for (name, source, ctx) in self.sources {
            let id =
                tasks.spawn(async move { source.run(ctx).await.map_err(ComponentError::from) });
            names.insert(id.id(), format!("sources.{name}"));
        }
        let persistent: Vec<Topic> = self
            .topics
            .values()
            .filter(|topic| topic.is_persistent())
            .cloned()
            .collect();
        let maintenance = (!persistent.is_empty()).then(|| {
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(MAINTENANCE_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let topics = persistent.clone();
                    // Deleting segments is file I/O: off the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || {
                        topics.iter().for_each(Topic::maintain);
                    })
                    .await;
                }
            })
        });
        RunningTopology {
            tasks,
            names,
            maintenance,
            topics: self.topics,
            metrics: self.metrics,
            trigger: self.trigger,
            shutdown: self.shutdown,
            shutdown_timeout: self.shutdown_timeout,
            failures: Vec::new(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Everything drained: every source finished and every event was passed on.
    Drained,
    /// A shutdown signal arrived and the graph drained within the timeout.
    ShutDown,
    /// The shutdown timeout elapsed; these components were aborted with events in flight.
    TimedOut(Vec<String>),
}

/// Why a component's task ended early (pipelines do not fail: their errors are per event).
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// A source stopped.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink stopped.
    #[error(transparent)]
    Sink(#[from] SinkRunError),
}

/// A started graph.
pub struct RunningTopology {
    tasks: JoinSet<Result<(), ComponentError>>,
    names: HashMap<tokio::task::Id, String>,
    /// Retention of disk topics, every few seconds.
    maintenance: Option<tokio::task::JoinHandle<()>>,
    topics: IndexMap<String, Topic>,
    metrics: Arc<Metrics>,
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
    shutdown_timeout: Duration,
    failures: Vec<(String, String)>,
}

impl RunningTopology {
    /// The topics, by name.
    pub fn topics(&self) -> &IndexMap<String, Topic> {
        &self.topics
    }

    /// Every component's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A signal that fires when shutdown starts.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Components that failed, with their errors.
    pub fn failures(&self) -> &[(String, String)] {
        &self.failures
    }

    /// Runs until the graph drains by itself or `signal` completes; then drains within the
    /// shutdown timeout.
    ///
    /// A sink that fails (its store refuses it and nobody waits for a fix) starts a shutdown
    /// too: the events it held can never be acknowledged, so once every sink has stopped the
    /// sources and pipelines still waiting for acknowledgements are stopped at once — saving
    /// what is safe — rather than at the shutdown timeout. The outcome is then
    /// [`RunOutcome::ShutDown`] with the sink among [`RunningTopology::failures`].
    pub async fn wait(&mut self, signal: impl Future<Output = ()>) -> RunOutcome {
        let outcome = self.run_until_stopped(signal).await;
        if let Some(maintenance) = self.maintenance.take() {
            maintenance.abort();
        }
        self.flush_disk_topics().await;
        outcome
    }

    /// Makes every disk topic store what it was given and persist its subscriptions' offsets,
    /// so a restart neither redelivers what was acknowledged nor misses what was accepted.
    async fn flush_disk_topics(&self) {
        let topics: Vec<Topic> = self
            .topics
            .values()
            .filter(|topic| topic.is_persistent())
            .cloned()
            .collect();
        if topics.is_empty() {
            return;
        }
        let flushed = tokio::task::spawn_blocking(move || {
            for topic in &topics {
                if let Err(error) = topic.flush() {
                    tracing::error!(topic = topic.name(), %error, "Could not flush a disk topic");
                }
            }
        })
        .await;
        if let Err(error) = flushed {
            tracing::error!(%error, "Flushing the disk topics failed");
        }
    }

    async fn run_until_stopped(&mut self, signal: impl Future<Output = ()>) -> RunOutcome {
        tokio::pin!(signal);
        loop {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => match joined {
                    Some(result) => self.record(result),
                    None => return RunOutcome::Drained,
                },
                () = &mut signal => break,
            }
            if self.sink_failed() {
                tracing::error!("A sink stopped with an error; shutting down");
                break;
            }
        }
        tracing::info!(timeout = ?self.shutdown_timeout, "Shutting down: draining in-flight events");
        self.trigger.trigger();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        loop {
            if self.sink_failed() && !self.names.values().any(|name| name.starts_with("sinks.")) {
                // Nothing acknowledges events any more: what still waits would wait in vain.
                self.tasks.abort_all();
                while let Some(result) = self.tasks.join_next_with_id().await {
                    if let Ok((id, _)) = &result {
                        self.names.remove(id);
                    } else if let Err(error) = &result {
                        self.names.remove(&error.id());
                    }
                }
                return RunOutcome::ShutDown;
            }
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(result)) => self.record(result),
                Ok(None) => return RunOutcome::ShutDown,
                Err(_) => break,
            }
        }
        // Finished tasks were removed from `names`; what is left is still running.
        let mut pending: Vec<String> = self.names.values().cloned().collect();
        pending.sort();
        pending.dedup();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        RunOutcome::TimedOut(pending)
    }

    /// Whether a sink failed.
    fn sink_failed(&self) -> bool {
        self.failures
            .iter()
            .any(|(component, _)| component.starts_with("sinks."))
    }

    /// Signals shutdown without waiting.
    pub fn trigger_shutdown(&self) {
        self.trigger.trigger();
    }

    fn record(
        &mut self,
        result: Result<(tokio::task::Id, Result<(), ComponentError>), tokio::task::JoinError>,
    ) {
        match result {
            Ok((id, Ok(()))) => {
                self.names.remove(&id);
            }
            Ok((id, Err(error))) => {
                let name = self.names.remove(&id).unwrap_or_default();
                tracing::error!(component = %name, %error, "Component failed");
                self.failures.push((name, error.to_string()));
            }
            Err(error) => {
                let name = self.names.remove(&error.id()).unwrap_or_default();
                let message = if error.is_panic() {
                    "panicked (a bug: please report it)".to_owned()
                } else {
                    error.to_string()
                };
                tracing::error!(component = %name, error = %message, "Component stopped");
                self.failures.push((name, message));
            }
        }
    }
}
