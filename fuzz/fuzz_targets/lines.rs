//! The line splitter (`agent/sources/lines.rs`) on any bytes, any delimiter, any line limit and
//! any chunking, fed by `extend` or by `read_from` as the file and stdin sources do.
//!
//! Input: `[delimiter choice, max_line_bytes - 1, chunking seed, data...]`.
//!
//! Invariants:
//! - every line is the slice of the input at its offset;
//! - the lines are those of a plain reference splitter written from the module doc (every input
//!   byte is in a line, a delimiter, a stripped `\r` or the skipped tail of a too-long line),
//!   except that a line that is empty or only whitespace may be left out;
//! - the splitter never holds more than the limit plus a delimiter (and a `\r`) once it has
//!   returned every line it can;
//! - at the end everything fed was consumed.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use sluice::sources::lines::{LineFormat, LineSplitter};

const DELIMITERS: [&str; 6] = ["\n", ";", "\r\n", "||", "aba", "\n\n"];

/// Splits `input` following the module doc's rules, as plainly as possible:
/// `(line, offset, truncated)`.
fn reference(input: &[u8], delimiter: &[u8], max: usize) -> Vec<(Vec<u8>, u64, bool)> {
    let strip_cr = delimiter == b"\n";
    let mut lines = Vec::new();
    let mut start = 0;
    while start < input.len() {
        let rest = &input[start..];
        let found = rest
            .windows(delimiter.len())
            .position(|window| window == delimiter);
        let (mut content, consumed) = match found {
            Some(at) => (&rest[..at], at + delimiter.len()),
            None => (rest, rest.len()),
        };
        if strip_cr && content.last() == Some(&b'\r') {
            content = &content[..content.len() - 1];
        }
        let truncated = content.len() > max;
        lines.push((
            content[..content.len().min(max)].to_vec(),
            start as u64,
            truncated,
        ));
        start += consumed;
    }
    lines
}

/// A reader that hands out its data in chunks of varying sizes.
struct Chunked<'a> {
    data: &'a [u8],
    seed: u32,
}

impl Chunked<'_> {
    fn next_size(&mut self) -> usize {
        self.seed = self.seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + (self.seed >> 16) as usize % 37
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.next_size().min(buf.len()).min(self.data.len());
        buf[..size].copy_from_slice(&self.data[..size]);
        self.data = &self.data[size..];
        Ok(size)
    }
}

fuzz_target!(|input: &[u8]| {
    let [choice, max, seed, data @ ..] = input else {
        return;
    };
    let delimiter = DELIMITERS[usize::from(*choice) % DELIMITERS.len()];
    let max = 1 + usize::from(*max % 64);
    let format = LineFormat::new(delimiter, max as u64).expect("a valid format");
    let mut splitter = LineSplitter::new(&format, 0);
    // After every line that can be returned is returned, at most this much is held.
    let held_bound = max + delimiter.len() - 1 + usize::from(delimiter == "\n");

    let mut lines = Vec::new();
    let mut fed = 0usize;
    if seed & 0x80 != 0 {
        let mut reader = Chunked {
            data,
            seed: u32::from(*seed),
        };
        loop {
            let read = splitter
                .read_from(&mut reader, usize::from(seed % 41) + 1)
                .expect("reading a slice never fails");
            fed += read;
            let next = if read == 0 {
                LineSplitter::finish
            } else {
                LineSplitter::next_line
            };
            while let Some(line) = next(&mut splitter) {
                lines.push(line);
            }
            assert!(splitter.pending_bytes() <= held_bound);
            if read == 0 {
                break;
            }
        }
    } else {
        let mut cuts = Chunked {
            data: &[],
            seed: u32::from(*seed),
        };
        let mut rest = data;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(cuts.next_size().min(rest.len()));
            rest = tail;
            splitter.extend(chunk);
            fed += chunk.len();
            assert_eq!(splitter.end_offset(), fed as u64);
            while let Some(line) = splitter.next_line() {
                lines.push(line);
            }
            assert!(splitter.pending_bytes() <= held_bound);
        }
        while let Some(line) = splitter.finish() {
            lines.push(line);
        }
    }
    assert_eq!(fed, data.len());
    assert_eq!(splitter.pending_bytes(), 0);
    assert_eq!(splitter.resume_offset(), data.len() as u64);

    for line in &lines {
        let at = line.offset as usize;
        assert_eq!(&data[at..at + line.bytes.len()], &line.bytes[..]);
        assert!(line.bytes.len() <= max);
    }
    let expected = reference(data, delimiter.as_bytes(), max);
    let mut got = lines.iter().peekable();
    for (text, offset, truncated) in &expected {
        match got.peek() {
            Some(line) if line.offset == *offset => {
                assert_eq!((&line.bytes[..], line.truncated), (&text[..], *truncated));
                got.next();
            }
            _ => assert!(
                !truncated && text.trim_ascii().is_empty(),
                "the line at {offset} ({text:?}) is missing"
            ),
        }
    }
    assert!(got.next().is_none(), "lines the reference does not have");
});
