//! `sluice graph`: the config's graph in Graphviz DOT.
//!
//! Sources are drawn as inverted houses, topics as cylinders, pipelines as boxes listing their
//! steps, and sinks as houses; dead-letter edges are dashed, and the topics a pipeline's `route`
//! steps send to get an edge labelled `routed`. Pipe the output to `dot -Tsvg`.

use std::fmt::Write;

use sluice_pipelines::ComponentKind;

use crate::config::Config;

/// Renders `config` as a DOT digraph.
pub fn to_dot(config: &Config) -> String {
    let mut dot =
        String::from("digraph sluice {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for (name, topic) in &config.topics {
        let storage = if topic.is_disk() { "disk" } else { "memory" };
        let _ = writeln!(
            dot,
            "  {} [shape=cylinder, label=\"{}\\n{}\"];",
            id("topic", name),
            escape(name),
            storage
        );
    }
    for (name, source) in &config.sources {
        let _ = writeln!(
            dot,
            "  {} [shape=invhouse, label=\"{}\\n({})\"];",
            id("source", name),
            escape(name),
            source.config.kind()
        );
        let _ = writeln!(
            dot,
            "  {} -> {};",
            id("source", name),
            id("topic", &source.topic)
        );
    }
    for (name, pipeline) in &config.pipelines {
        let steps: Vec<&str> = pipeline.steps.iter().map(ComponentKind::kind).collect();
        let workers = pipeline.subscription.workers;
        let _ = writeln!(
            dot,
            "  {} [shape=box, style=rounded, label=\"{}\\n{}{}\"];",
            id("pipeline", name),
            escape(name),
            steps.join(" → "),
            if workers > 1 {
                format!("\\n×{workers} workers")
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            dot,
            "  {} -> {};",
            id("topic", &pipeline.subscription.input),
            id("pipeline", name)
        );
        let _ = writeln!(
            dot,
            "  {} -> {};",
            id("pipeline", name),
            id("topic", &pipeline.output)
        );
        let mut routed: Vec<String> = Vec::new();
        for topic in pipeline.steps.iter().flat_map(|step| step.output_topics()) {
            if !routed.contains(&topic) {
                let _ = writeln!(
                    dot,
                    "  {} -> {} [label=\"routed\"];",
                    id("pipeline", name),
                    id("topic", &topic)
                );
                routed.push(topic);
            }
        }
        let _ = writeln!(
            dot,
            "  {} -> {} [style=dashed, label=\"rejected\"];",
            id("pipeline", name),
            id("topic", &pipeline.dead_letter)
        );
    }
    for (name, sink) in &config.sinks {
        let _ = writeln!(
            dot,
            "  {} [shape=house, label=\"{}\\n({})\"];",
            id("sink", name),
            escape(name),
            sink.config.kind()
        );
        let style = if sink.subscription.blocking {
            ""
        } else {
            " [style=dotted, label=\"non-blocking\"]"
        };
        let _ = writeln!(
            dot,
            "  {} -> {}{};",
            id("topic", &sink.subscription.input),
            id("sink", name),
            style
        );
    }
    dot.push_str("}\n");
    dot
}

/// A quoted DOT node id, unique per kind.
fn id(kind: &str, name: &str) -> String {
    format!("\"{kind}:{}\"", escape(name))
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
