//! The text `sluice topics list` and `sluice topics verify` print.

use super::*;

/// Human-readable bytes: `812 bytes`, `1.5 KiB`, `64.0 MiB`.
pub(super) fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn damage_text(damage: &Damage) -> String {
    let (what, fate) = if damage.torn_tail {
        ("torn tail", "cut off on the next start")
    } else {
        ("corrupt record", "quarantined on the next start")
    };
    format!(
        "{what} in segment {} at byte {}: {} ({} bytes from there, {fate})",
        damage.segment, damage.position, damage.problem, damage.bytes
    )
}

/// The text `list` prints.
pub fn render_list(listings: &[TopicListing]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    if listings.is_empty() {
        text.push_str("no topics\n");
    }
    for topic in listings {
        let _ = write!(
            text,
            "{} ({}): offsets {}..{}",
            topic.name, topic.storage, topic.start_offset, topic.end_offset
        );
        if let (Some(bytes), Some(segments)) = (topic.disk_bytes, topic.segments) {
            let noun = if segments == 1 { "segment" } else { "segments" };
            let _ = write!(text, ", {} in {segments} {noun}", bytes_text(bytes));
        }
        if let (Some(oldest), Some(newest)) = (&topic.oldest_append, &topic.newest_append) {
            let _ = write!(text, ", appended {oldest} to {newest}");
        }
        text.push('\n');
        if topic.subscriptions.is_empty() {
            text.push_str("  no subscriptions\n");
        }
        for sub in &topic.subscriptions {
            let _ = writeln!(
                text,
                "  subscription {}: committed {}, lag {}",
                sub.name, sub.committed_offset, sub.lag_events
            );
        }
        if let Some(quarantined) = topic.quarantined.filter(|q| q.files > 0) {
            let _ = writeln!(
                text,
                "  quarantine: {} files, {} moved aside by recovery",
                quarantined.files,
                bytes_text(quarantined.bytes)
            );
        }
        if let Some(recovered) = topic.recovered.filter(|r| *r != Recovered::default()) {
            let _ = writeln!(
                text,
                "  recovery since the agent started: {} torn tails cut ({}), {} corrupt records \
                 quarantined ({})",
                recovered.torn_tails,
                bytes_text(recovered.torn_bytes),
                recovered.corrupt_records,
                bytes_text(recovered.quarantined_bytes)
            );
        }
        for damage in &topic.damage {
            let _ = writeln!(text, "  {}", damage_text(damage));
        }
    }
    text
}

/// The text `verify` prints.
pub fn render_verify(data_dir: &Path, results: &[(String, Verified)]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    if results.is_empty() {
        let _ = writeln!(
            text,
            "no disk topics in {}",
            data_dir.join(TOPICS_DIR).display()
        );
    }
    for (name, verified) in results {
        let verdict = if verified.corrupt() { "CORRUPT" } else { "OK" };
        let noun = if verified.segments == 1 {
            "segment"
        } else {
            "segments"
        };
        let _ = writeln!(
            text,
            "{name}: {verdict}: {} records, {} events, {} in {} {noun}",
            verified.records,
            verified.events,
            bytes_text(verified.bytes),
            verified.segments
        );
        for damage in &verified.damage {
            let _ = writeln!(text, "  {}", damage_text(damage));
        }
    }
    text
}
