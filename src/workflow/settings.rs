//! `[train]` and `[tasks.NAME]` in `attempt.toml`, merged with command-line
//! overrides into a `TrainConfig` and the task data to train on.
//!
//! ```toml
//! [train]
//! tasks = ["rte", "my-reviews"]   # built-in, synthetic or [tasks.NAME]
//! data-dir = "../shared/data"      # where built-in task files are
//! method = "attempt"               # attempt | pt | spot | uniform
//! epochs = 3
//! max-steps = 500
//! batch-size = 16
//! lr = 0.3
//! seed = 42
//! max-length = 128
//! few-shot = 16                    # k examples per class
//! attention-scores = "cosine"      # G's scores: dot (the paper, default) | cosine
//! attention-temperature = 0.1      # default d·e for dot, 0.1 for cosine
//! learn-temperature = true         # train the temperature with G
//! standardise-attention-input = true # G starts from standardised pooled inputs
//! prompt-row-norm = 2.0            # rescale source prompts before mixing
//! group-by-length = true           # batch inputs of similar length (less padding)
//!
//! [tasks.my-reviews]
//! train = "data/train.jsonl"
//! dev = "data/dev.jsonl"
//! text-a = "review"
//! label = "stars"
//! labels = ["1", "2", "3", "4", "5"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::compose::{AttentionScores, Method};
use crate::data::{few_shot, load_examples, resolve_task, SyntheticSizes, TaskOrigin, TaskSpec};
use crate::train::{TaskData, TrainConfig};

/// `[train]`: every key optional; command-line flags win.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrainSection {
    pub tasks: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub method: Option<Method>,
    pub epochs: Option<usize>,
    pub max_steps: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub lr_other: Option<f64>,
    pub seed: Option<u64>,
    pub prompt_length: Option<usize>,
    pub max_length: Option<usize>,
    pub few_shot: Option<usize>,
    pub max_train_examples: Option<usize>,
    pub max_eval_examples: Option<usize>,
    pub eval_every: Option<usize>,
    pub synthetic_train: Option<usize>,
    pub synthetic_dev: Option<usize>,
    /// G's scores: dot (the paper) or cosine.
    pub attention_scores: Option<AttentionScores>,
    /// G's softmax temperature (default d·e for dot, 0.1 for cosine scores).
    pub attention_temperature: Option<f64>,
    /// Learn the temperature with G.
    pub learn_temperature: Option<bool>,
    /// Standardise G's pooled input with the training set's statistics.
    pub standardise_attention_input: Option<bool>,
    /// Rescale source prompts to this mean row norm before mixing.
    pub prompt_row_norm: Option<f64>,
    /// Batch inputs of similar length together.
    pub group_by_length: Option<bool>,
    /// The source ATTEMPT's or SPoT's target prompt starts from (a locked
    /// package name); default: the best-ranked kept by `suggest --apply`,
    /// else the first in the lock.
    pub init_source: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawProjectFile {
    #[serde(default)]
    train: Option<toml::Value>,
    #[serde(default)]
    tasks: BTreeMap<String, toml::Value>,
}

/// `[train]` and `[tasks.*]` of the manifest at `path`.
pub fn read_sections(path: &Path) -> Result<(TrainSection, BTreeMap<String, TaskSpec>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw: RawProjectFile = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let train = match raw.train {
        Some(v) => v.try_into().with_context(|| format!("{}: invalid [train] section", path.display()))?,
        None => TrainSection::default(),
    };
    let mut tasks = BTreeMap::new();
    for (name, v) in raw.tasks {
        let spec: TaskSpec = v.try_into().with_context(|| format!("{}: invalid [tasks.{name}]", path.display()))?;
        tasks.insert(name, spec);
    }
    Ok((train, tasks))
}

impl TrainSection {
    /// `self` with every value set in `over` replacing it.
    pub fn overridden_by(&self, over: &TrainSection) -> TrainSection {
        macro_rules! pick {
            ($($f:ident),*) => { TrainSection {
                tasks: if over.tasks.is_empty() { self.tasks.clone() } else { over.tasks.clone() },
                $($f: over.$f.clone().or_else(|| self.$f.clone()),)*
            } };
        }
        pick!(
            data_dir,
            method,
            epochs,
            max_steps,
            batch_size,
            lr,
            lr_other,
            seed,
            prompt_length,
            max_length,
            few_shot,
            max_train_examples,
            max_eval_examples,
            eval_every,
            synthetic_train,
            synthetic_dev,
            attention_scores,
            attention_temperature,
            learn_temperature,
            standardise_attention_input,
            prompt_row_norm,
            group_by_length,
            init_source
        )
    }

    /// The training configuration: library defaults, then these values.
    pub fn config(&self) -> TrainConfig {
        let mut c = TrainConfig::default();
        if let Some(v) = self.method {
            c.method = v;
        }
        if let Some(v) = self.epochs {
            c.epochs = v;
        }
        c.max_steps = self.max_steps.or(c.max_steps);
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        if let Some(v) = self.lr {
            c.lr_prompt = v;
        }
        if let Some(v) = self.lr_other {
            c.lr_other = v;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        if let Some(v) = self.prompt_length {
            c.prompt_length = v;
        }
        if let Some(v) = self.max_length {
            c.max_length = v;
        }
        c.max_eval_examples = self.max_eval_examples.or(c.max_eval_examples);
        if let Some(v) = self.eval_every {
            c.eval_every = v.max(1);
        }
        if let Some(v) = self.attention_scores {
            c.attention.scores = v;
        }
        c.attention.temperature = self.attention_temperature.or(c.attention.temperature);
        if let Some(v) = self.learn_temperature {
            c.attention.learn_temperature = v;
        }
        if let Some(v) = self.standardise_attention_input {
            c.attention.standardise_input = v;
        }
        c.prompt_row_norm = self.prompt_row_norm.or(c.prompt_row_norm);
        if let Some(v) = self.group_by_length {
            c.group_by_length = v;
        }
        c
    }

    pub fn synthetic_sizes(&self) -> SyntheticSizes {
        let d = SyntheticSizes::default();
        SyntheticSizes {
            train: self.synthetic_train.unwrap_or(d.train),
            dev: self.synthetic_dev.unwrap_or(d.dev),
            seed: self.seed.unwrap_or(d.seed),
        }
    }
}

/// Which tasks to load and from where.
#[derive(Debug, Clone)]
pub struct TaskSelection<'a> {
    pub names: &'a [String],
    pub user: &'a BTreeMap<String, TaskSpec>,
    /// Base of user-defined task paths (the project directory).
    pub project_dir: &'a Path,
    /// Base of built-in task files (`[train] data-dir`).
    pub data_dir: Option<&'a Path>,
    pub section: &'a TrainSection,
}

/// Load (or generate) the train/dev examples of every selected task,
/// applying few-shot sampling and the train-size cap.
pub fn load_tasks(sel: &TaskSelection<'_>) -> Result<Vec<TaskData>> {
    if sel.names.is_empty() {
        bail!("no tasks to train on: list them under [train] tasks in attempt.toml or pass --task NAME");
    }
    let seed = sel.section.seed.unwrap_or(TrainConfig::default().seed);
    let mut out = Vec::new();
    for name in sel.names {
        let (def, origin) = resolve_task(name, sel.user)?;
        let base = match origin {
            TaskOrigin::User => sel.project_dir.to_path_buf(),
            TaskOrigin::Builtin => match sel.data_dir {
                Some(d) => d.to_path_buf(),
                None => bail!(
                    "task `{name}` is a built-in task read from files: set `data-dir` under [train] (a directory laid out \
                     like GLUE, e.g. ../shared/data) or pass --data-dir"
                ),
            },
            TaskOrigin::Synthetic => sel.project_dir.to_path_buf(),
        };
        let mut splits = load_examples(&def, origin, &base, sel.section.synthetic_sizes())?;
        if let Some(k) = sel.section.few_shot {
            splits.train = few_shot(&splits.train, k, seed);
        }
        if let Some(n) = sel.section.max_train_examples {
            splits.train.truncate(n);
        }
        out.push(TaskData { task: splits.task, train: splits.train, dev: splits.dev });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_train_and_tasks_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempt.toml");
        std::fs::write(
            &path,
            "[project]\nname = \"p\"\n[train]\ntasks = [\"mine\"]\nmethod = \"spot\"\nmax-steps = 7\nlr = 0.1\n\
             [tasks.mine]\ntrain = \"t.jsonl\"\ndev = \"d.jsonl\"\ntext-a = \"text\"\nlabel = \"y\"\nlabels = [\"a\", \"b\"]\n",
        )
        .unwrap();
        let (train, tasks) = read_sections(&path).unwrap();
        assert_eq!(train.tasks, ["mine"]);
        assert_eq!(train.method, Some(Method::Spot));
        assert!(tasks.contains_key("mine"));
        let over = TrainSection { method: Some(Method::Attempt), seed: Some(3), ..TrainSection::default() };
        let merged = train.overridden_by(&over);
        let c = merged.config();
        assert_eq!((c.method, c.max_steps, c.lr_prompt, c.seed), (Method::Attempt, Some(7), 0.1, 3));
        assert_eq!(merged.tasks, ["mine"]);
    }

    #[test]
    fn unknown_train_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempt.toml");
        std::fs::write(&path, "[project]\nname = \"p\"\n[train]\nlearning-rate = 0.3\n").unwrap();
        let err = format!("{:#}", read_sections(&path).unwrap_err());
        assert!(err.contains("[train]") && err.contains("learning-rate"), "{err}");
    }
}
