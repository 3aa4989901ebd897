//! Task definitions: which fields are the inputs, what the labels are, which
//! metrics to report, and where the files of each split live.

use serde::{Deserialize, Serialize};

use super::metrics::Metric;

/// Classification with named labels, or regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TaskKind {
    Classification { labels: Vec<String> },
    Regression,
}

impl TaskKind {
    /// Output width of a head for this task.
    pub fn output_size(&self) -> usize {
        match self {
            TaskKind::Classification { labels } => labels.len(),
            TaskKind::Regression => 1,
        }
    }
}

/// A column of a row: a field/header name, or a 0-based position (negative
/// counts from the end, for TSVs like STS-B whose useful columns are last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Column {
    Index(i64),
    Name(String),
}

impl From<&str> for Column {
    fn from(s: &str) -> Self {
        Column::Name(s.to_string())
    }
}

/// Which columns hold the texts and the label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FieldMap {
    pub text_a: Column,
    #[serde(default)]
    pub text_b: Option<Column>,
    pub label: Column,
}

/// On-disk formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// Tab-separated with a header row; no quote handling (GLUE).
    Tsv,
    /// Tab-separated without a header (CoLA); columns by index.
    TsvNoHeader,
    /// Comma-separated with a header row and RFC 4180 quoting.
    Csv,
    /// One JSON object per line (SuperGLUE).
    Jsonl,
    /// A JSON object of rows keyed by index, or a JSON array of rows.
    Json,
    /// Li & Roth's question files (TREC): one `COARSE:fine text` per line,
    /// read as three columns — coarse label, fine label, text.
    LabelPrefixed,
}

impl FileFormat {
    /// Guess from a file name's extension.
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "tsv" => Some(FileFormat::Tsv),
            "csv" => Some(FileFormat::Csv),
            "jsonl" => Some(FileFormat::Jsonl),
            "json" => Some(FileFormat::Json),
            _ => None,
        }
    }
}

/// Rows taken from a file: all of them, the first n, or the last n.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowRange {
    All,
    First(usize),
    Last(usize),
}

/// One split: a file (relative to the task's data directory) and a row range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFile {
    pub file: String,
    pub format: FileFormat,
    pub rows: RowRange,
}

/// A complete task definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDef {
    pub name: String,
    pub kind: TaskKind,
    /// Reported metrics; the first one selects the best checkpoint.
    pub metrics: Vec<Metric>,
    pub fields: FieldMap,
    pub train: Option<SplitFile>,
    pub dev: Option<SplitFile>,
}

impl TaskDef {
    pub fn labels(&self) -> &[String] {
        match &self.kind {
            TaskKind::Classification { labels } => labels,
            TaskKind::Regression => &[],
        }
    }
    pub fn primary_metric(&self) -> Metric {
        self.metrics.first().copied().unwrap_or(match self.kind {
            TaskKind::Classification { .. } => Metric::Accuracy,
            TaskKind::Regression => Metric::Pearson,
        })
    }
}

fn labels(names: &[&str]) -> TaskKind {
    TaskKind::Classification { labels: names.iter().map(|s| s.to_string()).collect() }
}

fn split(file: &str, format: FileFormat) -> Option<SplitFile> {
    Some(SplitFile { file: file.to_string(), format, rows: RowRange::All })
}

fn fields(a: &str, b: Option<&str>, label: &str) -> FieldMap {
    FieldMap { text_a: a.into(), text_b: b.map(Column::from), label: label.into() }
}

/// Names of the built-in tasks (lower case).
pub fn builtin_task_names() -> &'static [&'static str] {
    &[
        "mnli", "qnli", "qqp", "sst2", "rte", "mrpc", "cola", "stsb", "cb", "boolq", "wnli", "sst5", "subj", "agnews",
        "trec",
    ]
}

/// A built-in task by name (case-insensitive; `sst-2`/`sts-b` accepted).
/// File paths are relative to a data directory laid out like `../shared/data`.
pub fn builtin_task(name: &str) -> Option<TaskDef> {
    use FileFormat::*;
    use Metric::*;
    let key = name.to_ascii_lowercase().replace(['-', '_'], "");
    let entail = || labels(&["entailment", "not_entailment"]);
    let binary = || labels(&["0", "1"]);
    let (kind, metrics, fields, train, dev) = match key.as_str() {
        "mnli" => (
            labels(&["entailment", "neutral", "contradiction"]),
            vec![Accuracy],
            fields("text_a", Some("text_b"), "label"),
            split("MNLI/train.json", Json),
            split("MNLI/dev.json", Json),
        ),
        "qnli" => (
            entail(),
            vec![Accuracy],
            fields("text_a", Some("text_b"), "label"),
            split("QNLI/train.json", Json),
            // The dev TSV names its columns question/sentence; mapped below.
            split("QNLI/dev.tsv", Tsv),
        ),
        "qqp" => (
            binary(),
            vec![Accuracy, F1],
            fields("text_a", Some("text_b"), "label"),
            split("QQP/train.json", Json),
            split("QQP/dev.json", Json),
        ),
        "sst2" => (
            binary(),
            vec![Accuracy],
            fields("sentence", None, "label"),
            split("SST-2/train.tsv", Tsv),
            split("SST-2/dev.tsv", Tsv),
        ),
        "rte" => (
            entail(),
            vec![Accuracy],
            fields("sentence1", Some("sentence2"), "label"),
            split("RTE/train.tsv", Tsv),
            split("RTE/dev.tsv", Tsv),
        ),
        "mrpc" => (
            binary(),
            vec![Accuracy, F1],
            fields("#1 String", Some("#2 String"), "Quality"),
            split("MRPC/train.tsv", Tsv),
            split("MRPC/dev.tsv", Tsv),
        ),
        "cola" => (
            binary(),
            vec![Matthews, Accuracy],
            FieldMap { text_a: Column::Index(3), text_b: None, label: Column::Index(1) },
            split("CoLA/train.tsv", TsvNoHeader),
            split("CoLA/dev.tsv", TsvNoHeader),
        ),
        "stsb" => (
            TaskKind::Regression,
            vec![Pearson, Spearman],
            FieldMap { text_a: Column::Index(-3), text_b: Some(Column::Index(-2)), label: Column::Index(-1) },
            split("STS-B/train.tsv", Tsv),
            split("STS-B/dev.tsv", Tsv),
        ),
        "cb" => (
            labels(&["entailment", "contradiction", "neutral"]),
            vec![Accuracy, MacroF1],
            fields("premise", Some("hypothesis"), "label"),
            split("CB/train.jsonl", Jsonl),
            split("CB/val.jsonl", Jsonl),
        ),
        "boolq" => (
            labels(&["false", "true"]),
            vec![Accuracy],
            fields("question", Some("passage"), "label"),
            Some(SplitFile { file: "BoolQ/val.jsonl".into(), format: Jsonl, rows: RowRange::First(2270) }),
            Some(SplitFile { file: "BoolQ/val.jsonl".into(), format: Jsonl, rows: RowRange::Last(1000) }),
        ),
        "wnli" => (
            binary(),
            vec![Accuracy],
            fields("sentence1", Some("sentence2"), "label"),
            split("WNLI/train.tsv", Tsv),
            split("WNLI/dev.tsv", Tsv),
        ),
        "sst5" => (
            labels(&["0", "1", "2", "3", "4"]),
            vec![Accuracy],
            fields("text_a", None, "label"),
            split("SST-5/train.json", Json),
            split("SST-5/dev.json", Json),
        ),
        "subj" => (
            binary(),
            vec![Accuracy],
            fields("text_a", None, "label"),
            split("SUBJ/train.json", Json),
            split("SUBJ/dev.json", Json),
        ),
        "agnews" => (
            labels(&["World", "Sports", "Business", "Sci/Tech"]),
            vec![Accuracy],
            FieldMap { text_a: Column::Index(0), text_b: None, label: Column::Index(1) },
            split("AGNews/train.tsv", TsvNoHeader),
            split("AGNews/test.tsv", TsvNoHeader),
        ),
        // The six coarse question classes; the fine label (column 1) is unused.
        "trec" => (
            labels(&["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]),
            vec![Accuracy],
            FieldMap { text_a: Column::Index(2), text_b: None, label: Column::Index(0) },
            split("TREC/train.txt", LabelPrefixed),
            split("TREC/test.txt", LabelPrefixed),
        ),
        _ => return None,
    };
    Some(TaskDef { name: key, kind, metrics, fields, train, dev })
}

/// Per-split field overrides for built-ins whose splits disagree (QNLI dev TSV).
pub(crate) fn split_fields(task: &TaskDef, split: &SplitFile) -> FieldMap {
    if task.name == "qnli" && split.format == FileFormat::Tsv {
        return fields("question", Some("sentence"), "label");
    }
    task.fields.clone()
}

/// A user-defined task as written in `attempt.toml` under `[tasks.NAME]`:
///
/// ```toml
/// [tasks.reviews]
/// train = "data/reviews-train.jsonl"
/// dev = "data/reviews-dev.jsonl"
/// text-a = "review"
/// label = "stars"
/// labels = ["1", "2", "3", "4", "5"]
/// metrics = ["accuracy", "macro-f1"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TaskSpec {
    pub train: Option<String>,
    pub dev: Option<String>,
    /// File format; guessed from the extension when absent.
    #[serde(default)]
    pub format: Option<FileFormat>,
    pub text_a: Column,
    #[serde(default)]
    pub text_b: Option<Column>,
    pub label: Column,
    /// Label names for classification; absent means regression.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

impl TaskSpec {
    /// Turn the spec into a task definition (paths stay as written, relative
    /// to the project directory).
    pub fn to_task_def(&self, name: &str) -> anyhow::Result<TaskDef> {
        let kind = match &self.labels {
            Some(l) if l.is_empty() => {
                anyhow::bail!("task `{name}`: `labels` is empty; list the label names or remove it for regression")
            }
            Some(l) => TaskKind::Classification { labels: l.clone() },
            None => TaskKind::Regression,
        };
        let split_of = |file: &Option<String>| -> anyhow::Result<Option<SplitFile>> {
            let Some(file) = file else { return Ok(None) };
            let format = match self.format.or_else(|| FileFormat::from_path(std::path::Path::new(file))) {
                Some(f) => f,
                None => anyhow::bail!(
                    "task `{name}`: cannot tell the format of `{file}`; set `format` to tsv, csv, jsonl or json"
                ),
            };
            Ok(Some(SplitFile { file: file.clone(), format, rows: RowRange::All }))
        };
        let mut metrics = self.metrics.clone();
        if metrics.is_empty() {
            metrics.push(if matches!(kind, TaskKind::Regression) { Metric::Pearson } else { Metric::Accuracy });
        }
        Ok(TaskDef {
            name: name.to_string(),
            kind,
            metrics,
            fields: FieldMap { text_a: self.text_a.clone(), text_b: self.text_b.clone(), label: self.label.clone() },
            train: split_of(&self.train)?,
            dev: split_of(&self.dev)?,
        })
    }
}
