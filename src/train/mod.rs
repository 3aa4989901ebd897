//! Training and evaluation of prompt models: source prompt tuning and
//! ATTEMPT target training (single- or multi-task), with checkpoints and a
//! run directory. The CLI commands are thin wrappers:
//!
//! - `train-source`: resolve the task (`data::resolve_task` +
//!   `data::load_examples`, optionally `data::few_shot`), then
//!   [`train_source_prompt`] with a [`TrainRequest`] (no sources) and a
//!   [`PackageInfo`] carrying the model fingerprint → authoring directory.
//! - `train`: after the lockfile is verified, pass each locked prompt as a
//!   [`SourcePrompt`] (`name@version`, tensor `[m, d]`), the tasks and a
//!   [`TrainConfig`] (method, seed…) to [`train`] with [`TrainOptions`]
//!   (`run_dir`, `resume`, `progress`, `interrupt: Some(interrupt::ctrl_c_flag())`,
//!   and a [`RunProvenance`] with fingerprint, lock checksum, sources and the
//!   backbone's parameter count). Print [`parameter_summary`].
//! - `eval` / `predict`: [`load_run`] with the run's sources in the same
//!   order, then [`evaluate()`] / [`predict()`] with a [`Backbone`].
//! - `package --from-run RUN --task T`: [`export_from_run`].
//!
//! Masks passed to `Encoder::encode` are f32 `[b, L]` (1.0 real, 0.0 pad).

pub mod batches;
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
pub mod export;
#[doc(hidden)]
pub mod testing;
pub use export::{export_from_run, training_info, write_authoring_dir, PackageInfo, TrainingInfo};
pub mod interrupt;
pub mod source;
pub use source::{parameter_summary, train_source_prompt};
pub mod suggest;
pub use suggest::{suggest_sources, Suggestion};
