//! How the CLI shows things to a person: tables with aligned columns,
//! `key  value` details, and times as `2026-12-01 06:09:35` (UTC) rather
//! than RFC 3339. `--json` bypasses all of it.

use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::model::Timestamp;

/// The widest a cell may be before it is cut: URLs and error messages
/// would otherwise push every other column off the screen.
const MAX_CELL: usize = 60;

pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|c| cut(&c, MAX_CELL)).collect());
    }

    pub fn print(&self) {
        out(&self.render());
    }

    /// Columns two spaces apart, each as wide as its widest cell; the last
    /// is not padded, so lines carry no trailing blanks.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let last = cells.len().saturating_sub(1);
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                line.push_str(cell);
                if i < last {
                    line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
                }
            }
            // An empty last cell would leave the padding before it.
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Writes `text` to stdout. A reader that went away (`| head`) is no
/// reason for a panic: what it did not read is simply not written.
pub fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// `out` for one line.
pub fn line(text: impl std::fmt::Display) {
    out(&format!("{text}\n"));
}

/// Prints `key  value` lines with the values aligned.
pub fn print_details(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    for (key, value) in rows {
        line(format_args!("{key:width$}  {value}"));
    }
}

/// Cuts `text` to `max` characters, marking the cut; line breaks become
/// spaces so one value stays on one line.
pub fn cut(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// An RFC 3339 time from the API as `2026-12-01 06:09:35` (UTC); `-` when
/// absent, the text as it came when it does not parse.
pub fn time(value: &Value) -> String {
    match value.as_str() {
        Some(text) => Timestamp::parse_rfc3339(text).map(readable).unwrap_or_else(|| text.to_owned()),
        None => "-".to_owned(),
    }
}

pub fn readable(at: Timestamp) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    OffsetDateTime::from_unix_timestamp_nanos(at.0 as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| at.to_rfc3339())
}

/// A JSON value as a cell: strings bare, `null` as `-`, the rest as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_lines_have_no_trailing_blanks() {
        let mut table = Table::new(&["ID", "STATUS", "URL"]);
        table.row(vec!["wh_1".into(), "success".into(), "http://a".into()]);
        table.row(vec!["wh_22".into(), "-".into(), "http://b/c".into()]);
        assert_eq!(table.render(), "ID     STATUS   URL\nwh_1   success  http://a\nwh_22  -        http://b/c\n");
    }

    #[test]
    fn long_cells_are_cut_and_flattened() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("a\nb", 10), "a b");
    }

    #[test]
    fn times_read_as_utc_seconds() {
        assert_eq!(time(&Value::String("2021-02-25T15:02:10.123Z".into())), "2021-02-25 15:02:10");
        assert_eq!(time(&Value::Null), "-");
    }
}
