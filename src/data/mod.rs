//! Task data: examples, task definitions (built-in GLUE/SuperGLUE and
//! user-defined), file loaders, metrics, few-shot sampling, synthetic tasks
//! and tokenisation into padded batches.

pub mod fewshot;
pub mod loaders;
pub mod metrics;
pub mod synthetic;
pub mod tasks;
pub mod tokenize;

use serde::{Deserialize, Serialize};

/// The gold answer of one example.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Label {
    /// Index into the task's label list.
    Class(usize),
    /// Regression target (STS-B similarity).
    Score(f32),
}

/// One example: one or two texts and a label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Label,
}

pub use fewshot::{few_shot, split_off};
pub use loaders::{load_split, load_task, TaskSplits};
pub use metrics::{Metric, Predictions};
pub use tasks::{builtin_task, builtin_task_names, Column, FieldMap, FileFormat, TaskDef, TaskKind, TaskSpec};
pub use tokenize::{collate, Batch, TextEncoder, WordTokenizer};
