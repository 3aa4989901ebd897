//! Training and evaluation of prompt models: source prompt tuning and
//! ATTEMPT target training (single- or multi-task), with checkpoints and a
//! run directory. The CLI commands are thin wrappers over `train`,
//! `evaluate`, `predict` and the `export` functions.

pub mod config;
pub mod model;

pub use config::TrainConfig;
pub use model::{Forward, PromptModel, SourcePrompt};
pub mod evaluate;
pub mod optim;
pub mod rundir;
pub mod trainer;

pub use evaluate::{evaluate, predict, Backbone, EvalResult, PredictedLabel, Prediction};
pub use rundir::{RunDir, RunProvenance, SourceRecord};
pub use trainer::{load_run, train, TaskData, TrainOptions, TrainOutcome, TrainRequest};
#[doc(hidden)]
pub mod testing;
pub mod export;
pub use export::{export_from_run, training_info, write_authoring_dir, PackageInfo, TrainingInfo};
pub mod interrupt;
pub mod source;
pub use source::{parameter_summary, train_source_prompt};
