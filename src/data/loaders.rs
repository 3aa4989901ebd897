//! File loaders: GLUE TSV (no quote handling, BOM stripped), headerless TSV,
//! CSV with quoting, SuperGLUE JSONL, JSON object-of-rows / arrays and TREC's
//! `COARSE:fine text` lines.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::tasks::{split_fields, Column, FieldMap, FileFormat, RowRange, SplitFile, TaskDef, TaskKind};
use super::{Example, Label};

/// A raw row: named fields (when the format has names) and positional cells.
#[derive(Debug, Clone, Default)]
struct Row {
    named: HashMap<String, String>,
    cells: Vec<String>,
}

impl Row {
    fn get(&self, col: &Column) -> Option<&str> {
        match col {
            Column::Name(n) => self.named.get(n).map(String::as_str),
            Column::Index(i) => {
                let len = self.cells.len() as i64;
                let idx = if *i < 0 { len + i } else { *i };
                if idx < 0 {
                    return None;
                }
                self.cells.get(idx as usize).map(String::as_str)
            }
        }
    }
}

/// The train and dev examples of one task.
#[derive(Debug, Clone)]
pub struct TaskSplits {
    pub task: TaskDef,
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
}

/// Load both splits of `task` from `data_dir` (paths in the definition are
/// relative to it).
pub fn load_task(task: &TaskDef, data_dir: &Path) -> Result<TaskSplits> {
    let load = |s: &Option<SplitFile>, which: &str| -> Result<Vec<Example>> {
        match s {
            Some(s) => load_split(task, s, data_dir),
            None => bail!("task `{}` has no {which} split defined", task.name),
        }
    };
    Ok(TaskSplits { task: task.clone(), train: load(&task.train, "train")?, dev: load(&task.dev, "dev")? })
}

/// Load one split file into examples.
pub fn load_split(task: &TaskDef, split: &SplitFile, data_dir: &Path) -> Result<Vec<Example>> {
    let path = data_dir.join(&split.file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read data file {} for task `{}`", path.display(), task.name))?;
    let rows = parse_rows(&text, split.format).with_context(|| format!("cannot parse {}", path.display()))?;
    let rows = match split.rows {
        RowRange::All => rows,
        RowRange::First(n) => rows.into_iter().take(n).collect(),
        RowRange::Last(n) => {
            let skip = rows.len().saturating_sub(n);
            rows.into_iter().skip(skip).collect()
        }
    };
    let fields = split_fields(task, split);
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            to_example(row, &fields, &task.kind)
                .with_context(|| format!("{}: data row {} (task `{}`)", path.display(), i + 1, task.name))
        })
        .collect()
}

fn to_example(row: &Row, fields: &FieldMap, kind: &TaskKind) -> Result<Example> {
    let field = |c: &Column| row.get(c).ok_or_else(|| anyhow!("missing field {c:?}"));
    let text_a = field(&fields.text_a)?.to_string();
    let text_b = match &fields.text_b {
        Some(c) => Some(field(c)?.to_string()),
        None => None,
    };
    let raw = field(&fields.label)?.trim();
    let label = match kind {
        TaskKind::Regression => Label::Score(raw.parse::<f32>().map_err(|_| anyhow!("label `{raw}` is not a number"))?),
        TaskKind::Classification { labels } => match labels.iter().position(|l| l == raw) {
            Some(i) => Label::Class(i),
            None => bail!("label `{raw}` is not one of {labels:?}"),
        },
    };
    Ok(Example { text_a, text_b, label })
}

fn parse_rows(text: &str, format: FileFormat) -> Result<Vec<Row>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        FileFormat::Tsv => parse_delimited(text.lines().map(split_tsv), true),
        FileFormat::TsvNoHeader => parse_delimited(text.lines().map(split_tsv), false),
        FileFormat::Csv => parse_delimited(parse_csv(text)?.into_iter(), true),
        FileFormat::LabelPrefixed => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| label_prefixed_row(l).with_context(|| format!("line {}", i + 1)))
            .collect(),
        FileFormat::Jsonl => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let v: serde_json::Value =
                    serde_json::from_str(l).with_context(|| format!("line {}: invalid JSON", i + 1))?;
                json_row(&v).with_context(|| format!("line {}", i + 1))
            })
            .collect(),
        FileFormat::Json => {
            let v: serde_json::Value = serde_json::from_str(text).context("invalid JSON")?;
            match v {
                serde_json::Value::Array(items) => items.iter().map(json_row).collect(),
                serde_json::Value::Object(map) => {
                    // Keep file order (serde_json sorts keys); numeric keys sort numerically.
                    let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                    if entries.iter().all(|(k, _)| k.parse::<u64>().is_ok()) {
                        entries.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(u64::MAX));
                    }
                    entries.into_iter().map(|(_, v)| json_row(v)).collect()
                }
                _ => bail!("expected a JSON array of rows or an object of rows"),
            }
        }
    }
}

/// `COARSE:fine text` → cells [coarse, fine, text].
fn label_prefixed_row(line: &str) -> Result<Row> {
    let line = line.trim_end_matches('\r');
    let (label, text) = line
        .split_once(' ')
        .ok_or_else(|| anyhow!("expected `COARSE:fine text`, got `{line}` (no text after the label)"))?;
    let (coarse, fine) = label
        .split_once(':')
        .ok_or_else(|| anyhow!("expected `COARSE:fine text`, got `{line}` (no `:` in the label)"))?;
    Ok(Row { named: HashMap::new(), cells: vec![coarse.to_string(), fine.to_string(), text.trim().to_string()] })
}

fn split_tsv(line: &str) -> Vec<String> {
    line.trim_end_matches('\r').split('\t').map(str::to_string).collect()
}

fn parse_delimited(mut lines: impl Iterator<Item = Vec<String>>, header: bool) -> Result<Vec<Row>> {
    let names = if header { lines.next().unwrap_or_default() } else { Vec::new() };
    Ok(lines
        .filter(|cells| !(cells.len() == 1 && cells[0].trim().is_empty()))
        .map(|cells| {
            let named = names.iter().cloned().zip(cells.iter().cloned()).collect();
            Row { named, cells }
        })
        .collect())
}

/// Minimal RFC 4180 CSV: quoted fields, doubled quotes, newlines in quotes.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => in_quotes = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        bail!("unterminated quoted field at end of file");
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

fn json_row(v: &serde_json::Value) -> Result<Row> {
    let obj = v.as_object().ok_or_else(|| anyhow!("expected a JSON object per row"))?;
    let named = obj
        .iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect();
    Ok(Row { named, cells: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_newlines() {
        let rows = parse_csv("a,b\n\"x, y\",\"he said \"\"hi\"\"\nok\"\n").unwrap();
        assert_eq!(rows, vec![vec!["a", "b"], vec!["x, y", "he said \"hi\"\nok"]]);
    }
}
