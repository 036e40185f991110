//! The `.env` file of the working directory, read before the command line
//! is parsed (seed 004 tells its users to keep `WEBHOOK_URL` there), so its
//! variables feed every flag that has one. A variable already set in the
//! environment wins over the file.

use std::path::Path;

use anyhow::{Context, anyhow};

/// Loads `.env` from the working directory, if there is one. Runs before
/// any thread starts, since it sets process environment variables.
pub fn load() -> anyhow::Result<()> {
    load_from(Path::new(".env"))
}

fn load_from(path: &Path) -> anyhow::Result<()> {
    match dotenvy::from_path(path) {
        Ok(()) => Ok(()),
        Err(err) if err.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(line, index)) => {
            // dotenvy names the offending text, not its line number: find it.
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let number = text.find(&line).map(|at| text[..at].matches('\n').count() + 1);
            let position = match number {
                Some(number) => format!("line {number}"),
                None => "a line".to_owned(),
            };
            Err(anyhow!(
                "{}: cannot parse {position} (`{}`) at character {}",
                path.display(),
                line.trim_end(),
                index + 1
            ))
        }
        Err(err) => Err(anyhow::Error::new(err)).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "# the seed's variables\n\nNOT A VARIABLE\nLATER=1\n").unwrap();
        let message = format!("{:#}", load_from(&path).unwrap_err());
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("NOT A VARIABLE"), "{message}");
    }

    #[test]
    fn no_file_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        load_from(&dir.path().join(".env")).unwrap();
    }
}
