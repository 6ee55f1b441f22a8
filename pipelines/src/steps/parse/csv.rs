//! The `csv` format: one record per line, fields named by `columns`.
//!
//! Quoting follows RFC 4180: a field that starts with `"` runs to the closing `"`, `""` inside it
//! is one quote, and it must be followed by the delimiter or the end of the line. A `"` inside an
//! unquoted field is kept as text (as Python's `csv` does), since real exports contain them.
//! Records never span lines here: the line splitter has already cut at newlines. Unquoted fields
//! and quoted fields without `""` are zero-copy slices of the line.

use memchr::memchr;

use crate::event::{FieldName, Fields, Str, Value};
use crate::step::BuildError;

/// A CSV reader for one `columns` list and delimiter.
#[derive(Debug)]
pub(super) struct CsvParser {
    /// One entry per column; `None` skips it.
    columns: Vec<Option<FieldName>>,
    delimiter: u8,
}

impl CsvParser {
    pub(super) fn new(
        columns: Option<&[String]>,
        delimiter: Option<&str>,
    ) -> Result<Self, BuildError> {
        let Some(columns) = columns else {
            return Err(BuildError::at(
                "columns",
                "format = \"csv\" needs `columns`, the field names of the columns in order",
            ));
        };
        if columns.is_empty() {
            return Err(BuildError::at("columns", "`columns` is empty"));
        }
        let mut names: Vec<Option<FieldName>> = Vec::with_capacity(columns.len());
        for (index, name) in columns.iter().enumerate() {
            if name.is_empty() {
                names.push(None);
                continue;
            }
            if columns[..index].contains(name) {
                return Err(BuildError::at(
                    format!("columns[{index}]"),
                    format!("column `{name}` is named twice"),
                ));
            }
            names.push(Some(FieldName::new(name)));
        }
        let delimiter = match delimiter.map(str::as_bytes) {
            None => b',',
            Some([byte]) if byte.is_ascii() && !matches!(byte, b'"' | b'\n' | b'\r') => *byte,
            Some(_) => {
                return Err(BuildError::at(
                    "delimiter",
                    "the delimiter must be one ASCII character other than `\"` and newlines",
                ));
            }
        };
        Ok(CsvParser {
            columns: names,
            delimiter,
        })
    }

    pub(super) fn has_column(&self, name: &FieldName) -> bool {
        self.columns.iter().flatten().any(|column| column == name)
    }

    /// Parses one record.
    ///
    /// # Errors
    /// A wrong number of fields, an unterminated quote, or text after a closing quote.
    pub(super) fn parse(&self, line: &Str) -> Result<Fields, String> {
        let text = line.as_str();
        let bytes = text.as_bytes();
        let mut fields = Fields::with_capacity(self.columns.len());
        let mut pos = 0;
        let mut count = 0;
        loop {
            let (value, end) = if bytes.get(pos) == Some(&b'"') {
                self.quoted(line, pos)?
            } else {
                let end = memchr(self.delimiter, &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
                let part = text.get(pos..end).unwrap_or_default();
                (line.slice_ref(part), end)
            };
            match self.columns.get(count) {
                Some(Some(name)) => fields.push_unchecked(name.clone(), Value::String(value)),
                Some(None) => {}
                None => {
                    return Err(format!(
                        "csv: expected {} fields, found more",
                        self.columns.len()
                    ));
                }
            }
            count += 1;
            if end >= bytes.len() {
                break;
            }
            // `end` is at a delimiter.
            pos = end + 1;
        }
        if count != self.columns.len() {
            return Err(format!(
                "csv: expected {} fields, found {count}",
                self.columns.len()
            ));
        }
        Ok(fields)
    }

    /// The quoted field opening at `open`, and the position after it (a delimiter or the end).
    fn quoted(&self, line: &Str, open: usize) -> Result<(Str, usize), String> {
        let text = line.as_str();
        let bytes = text.as_bytes();
        let start = open + 1;
        let mut at = start;
        let mut doubled = false;
        let end = loop {
            match memchr(b'"', bytes.get(at..).unwrap_or_default()) {
                Some(i) if bytes.get(at + i + 1) == Some(&b'"') => {
                    doubled = true;
                    at += i + 2;
                }
                Some(i) => break at + i,
                None => {
                    return Err(format!(
                        "csv: the quoted field at column {} has no closing quote",
                        open + 1
                    ));
                }
            }
        };
        let after = end + 1;
        if after < bytes.len() && bytes[after] != self.delimiter {
            return Err(format!(
                "csv: expected a delimiter after the closing quote at column {}",
                after + 1
            ));
        }
        let raw = text.get(start..end).unwrap_or_default();
        let value = if doubled {
            Str::from(raw.replace("\"\"", "\""))
        } else {
            line.slice_ref(raw)
        };
        Ok((value, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parser(columns: &[&str], delimiter: Option<&str>) -> CsvParser {
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        CsvParser::new(Some(&columns), delimiter).unwrap()
    }

    fn values(parser: &CsvParser, line: &str) -> Result<Vec<(String, String)>, String> {
        parser.parse(&Str::from(line)).map(|fields| {
            fields
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.as_str().unwrap().to_owned()))
                .collect()
        })
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn rfc4180_quoting() {
        let csv = parser(&["a", "b", "c"], None);
        assert_eq!(
            values(&csv, r#"1,"x, ""y""",z"#).unwrap(),
            pairs(&[("a", "1"), ("b", "x, \"y\""), ("c", "z")])
        );
        assert_eq!(
            values(&csv, r#",,"#).unwrap(),
            pairs(&[("a", ""), ("b", ""), ("c", "")])
        );
        assert_eq!(
            values(&csv, r#""",a"b,"""#).unwrap(),
            pairs(&[("a", ""), ("b", "a\"b"), ("c", "")])
        );
        assert_eq!(
            values(&csv, "1,2"),
            Err("csv: expected 3 fields, found 2".to_owned())
        );
        assert_eq!(
            values(&csv, "1,2,3,4"),
            Err("csv: expected 3 fields, found more".to_owned())
        );
        assert_eq!(
            values(&csv, r#"1,"2"x,3"#),
            Err("csv: expected a delimiter after the closing quote at column 6".to_owned())
        );
        assert_eq!(
            values(&csv, r#"1,"2,3"#),
            Err("csv: the quoted field at column 3 has no closing quote".to_owned())
        );
    }

    #[test]
    fn delimiters_and_skipped_columns() {
        let tsv = parser(&["a", "", "c"], Some("\t"));
        assert_eq!(
            values(&tsv, "1\tskipped\t\"3\"").unwrap(),
            pairs(&[("a", "1"), ("c", "3")])
        );
        for bad in ["", ";;", "\"", "é"] {
            let columns = vec!["a".to_owned()];
            let error = CsvParser::new(Some(&columns), Some(bad)).unwrap_err();
            assert_eq!(error.key.as_deref(), Some("delimiter"), "{bad:?}");
        }
        let twice = vec!["a".to_owned(), "a".to_owned()];
        assert_eq!(
            CsvParser::new(Some(&twice), None)
                .unwrap_err()
                .key
                .as_deref(),
            Some("columns[1]")
        );
        assert_eq!(
            CsvParser::new(None, None).unwrap_err().key.as_deref(),
            Some("columns")
        );
    }

    proptest! {
        #[test]
        fn written_records_read_back(record in prop::collection::vec("[ -~é]{0,10}", 1..6)) {
            let line: Vec<String> = record
                .iter()
                .map(|field| {
                    if field.contains([',', '"']) || field.is_empty() {
                        format!("\"{}\"", field.replace('"', "\"\""))
                    } else {
                        field.clone()
                    }
                })
                .collect();
            let names: Vec<String> = (0..record.len()).map(|i| format!("c{i}")).collect();
            let csv = CsvParser::new(Some(&names), None).unwrap();
            let fields = csv.parse(&Str::from(line.join(",").as_str())).unwrap();
            let read: Vec<&str> = fields.iter().map(|(_, v)| v.as_str().unwrap()).collect();
            prop_assert_eq!(read, record.iter().map(String::as_str).collect::<Vec<_>>());
        }

        #[test]
        fn never_panics(text in "[a,\"\t é]{0,30}") {
            let csv = parser(&["a", "b", ""], None);
            let _ = csv.parse(&Str::from(text.as_str()));
        }
    }
}
