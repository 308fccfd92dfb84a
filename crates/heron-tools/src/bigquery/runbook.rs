//! Runbooks: `.sql` files of vetted queries, offered to the model by name.
//!
//! A runbook is a file `<name>.sql` in the configured folder (sub-folders included; the name
//! is the path below the folder without `.sql`, with `/`). Its leading comment lines may carry
//! `-- Title: …` and `-- Description: …` (keys in any case); the title defaults to the name.
//! Names are unique by construction; files that are not UTF-8 are refused at load time, so
//! a broken folder is noticed at start-up rather than by the model.

use crate::ToolsSetupError;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runbook {
    pub name: String,
    pub title: String,
    pub description: String,
    pub sql: String,
}

/// Most runbooks loaded from one folder: each is listed in a tool description.
const MAX_RUNBOOKS: usize = 200;
const MAX_RUNBOOK_BYTES: u64 = 256 * 1024;

pub(crate) fn load(dir: &Path) -> Result<BTreeMap<String, Runbook>, ToolsSetupError> {
    let mut runbooks = BTreeMap::new();
    visit(dir, dir, 0, &mut runbooks)?;
    Ok(runbooks)
}

fn visit(
    root: &Path,
    dir: &Path,
    depth: usize,
    runbooks: &mut BTreeMap<String, Runbook>,
) -> Result<(), ToolsSetupError> {
    let error = |e: std::io::Error, path: &Path| {
        ToolsSetupError::Runbooks(format!("{}: {e}", path.display()))
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| error(e, dir))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(e, dir))?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| error(e, &path))?;
        if kind.is_dir() && depth < 8 {
            visit(root, &path, depth + 1, runbooks)?;
            continue;
        }
        if !kind.is_file() || path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        if runbooks.len() >= MAX_RUNBOOKS {
            return Err(ToolsSetupError::Runbooks(format!(
                "more than {MAX_RUNBOOKS} runbooks in {}",
                root.display()
            )));
        }
        let size = entry.metadata().map_err(|e| error(e, &path))?.len();
        if size > MAX_RUNBOOK_BYTES {
            return Err(ToolsSetupError::Runbooks(format!(
                "{} is larger than {MAX_RUNBOOK_BYTES} bytes",
                path.display()
            )));
        }
        let sql = std::fs::read_to_string(&path).map_err(|e| error(e, &path))?;
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        runbooks.insert(name.clone(), parse(&name, sql));
    }
    Ok(())
}

/// Reads the `-- Title:` and `-- Description:` headers of the leading comment block.
pub(crate) fn parse(name: &str, sql: String) -> Runbook {
    let mut title = None;
    let mut description = None;
    for line in sql.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        if let Some((key, value)) = comment.split_once(':') {
            let value = value.trim().to_owned();
            match key.trim().to_ascii_lowercase().as_str() {
                "title" if title.is_none() => title = Some(value),
                "description" if description.is_none() => description = Some(value),
                _ => {}
            }
        }
    }
    Runbook {
        name: name.to_owned(),
        title: title
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| name.to_owned()),
        description: description.unwrap_or_default(),
        sql: sql.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_from_the_leading_comments_only() {
        let r = parse(
            "failed_logins",
            "-- title: Failed logins per user\n--DESCRIPTION: Last 24 h, by user\n\nSELECT 1\n\
             -- Title: not this one\n"
                .into(),
        );
        assert_eq!(r.title, "Failed logins per user");
        assert_eq!(r.description, "Last 24 h, by user");
        assert!(r.sql.starts_with("-- title"));
        let bare = parse("plain", "SELECT 2".into());
        assert_eq!(
            (bare.title.as_str(), bare.description.as_str()),
            ("plain", "")
        );
    }
}
