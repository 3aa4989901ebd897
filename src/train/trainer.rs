//! The training loop shared by source prompt tuning and ATTEMPT target
//! training: mixed-task mini-batches, AdamW with warm-up/decay and clipping,
//! per-epoch dev evaluation with best-on-dev selection, checkpoints, resume
//! and interruption.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::data::tasks::TaskDef;
use crate::data::tokenize::{collate, TextEncoder, TokenCache};
use crate::data::{Example, Label};
use crate::model::Encoder;

use super::batches::epoch_batches;
use super::config::TrainConfig;
use super::evaluate::{evaluate, Backbone, EvalResult};
use super::model::{PromptModel, SourcePrompt};
use super::optim::{clip_grad_norm, linear_schedule, Optimizers};
use super::rundir::{
    load_tensors, save_tensors, EpochRecord, PartialEpoch, ResumeState, RunDir, RunIdentity, RunKernels, RunProvenance,
    RunRecord, TaskIdentity, CHECKPOINT, LAST_CHECKPOINT, METRICS, RESUME_STATE, RUN_RECORD,
};

/// Train and dev examples of one task.
#[derive(Debug, Clone)]
pub struct TaskData {
    pub task: TaskDef,
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
}

/// Everything a run trains on.
pub struct TrainRequest<'a> {
    pub encoder: &'a dyn Encoder,
    pub tokenizer: &'a dyn TextEncoder,
    /// Frozen source prompts (empty for source prompt tuning).
    pub sources: Vec<SourcePrompt>,
    pub tasks: Vec<TaskData>,
    pub config: TrainConfig,
    pub device: Device,
}

/// How a run is recorded and controlled.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Where checkpoints, metrics and the run record go (none: in memory only).
    pub run_dir: Option<PathBuf>,
    /// Continue from `last.safetensors` (trainable tensors and AdamW state)
    /// and `resume.json` in `run_dir`, mid-epoch included: the resumed run takes
    /// the same steps an uninterrupted one would have.
    pub resume: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    pub provenance: RunProvenance,
    /// Set (e.g. by a Ctrl-C handler) to stop after the current step; the
    /// loop then saves `last.safetensors` so `resume` can continue.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// What a run produced.
pub struct TrainOutcome {
    /// What the caller should tell the user (e.g. a resume without optimiser state).
    pub notes: Vec<String>,
    /// The model in its best-on-dev state.
    pub model: PromptModel,
    pub history: Vec<EpochRecord>,
    pub best_epoch: Option<usize>,
    pub best_score: Option<f64>,
    /// Dev evaluation of the best state, per task (in task order).
    pub best_eval: Vec<EvalResult>,
    /// Loss of the last optimiser step taken.
    pub final_loss: f32,
    pub steps: usize,
    pub trainable_parameters: usize,
    pub interrupted: bool,
    /// Wall time of each training step this call took, in seconds.
    pub step_seconds: Vec<f64>,
}

impl TrainOutcome {
    /// Mean wall time of a training step, in seconds (0 when none ran).
    pub fn mean_step_seconds(&self) -> f64 {
        self.step_seconds.iter().sum::<f64>() / self.step_seconds.len().max(1) as f64
    }
}

fn progress_bar(enabled: bool, total: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Train `request.tasks` with `request.config`. Returns the best-on-dev model.
pub fn train(request: TrainRequest<'_>, options: &TrainOptions) -> Result<TrainOutcome> {
    let TrainRequest { encoder, tokenizer, sources, tasks, config, device } = request;
    config.validate()?;
    for t in &tasks {
        if t.train.is_empty() {
            bail!("task `{}` has no training examples", t.task.name);
        }
        if t.dev.is_empty() {
            bail!("task `{}` has no dev examples to select the best checkpoint with", t.task.name);
        }
    }
    let defs: Vec<TaskDef> = tasks.iter().map(|t| t.task.clone()).collect();
    let mut init_rng = StdRng::seed_from_u64(config.seed);
    let model = PromptModel::new(encoder, tokenizer, &sources, &defs, &config, &mut init_rng, &device)?;
    for (i, t) in tasks.iter().enumerate() {
        model.start_at_label_mean(i, t.train.iter().map(|e| &e.label))?;
    }
    if let Some(g) = model.attention.as_ref().filter(|g| g.config.standardise_input && !options.resume) {
        let (mean, std) = pooled_input_stats(g, encoder, tokenizer, &tasks, config.max_length, &device)?;
        g.standardise_on(&mean, &std)?;
    }
    let run_dir = options.run_dir.as_ref().map(RunDir::create).transpose()?;

    let identity = RunIdentity {
        config: serde_json::to_value(&config).context("recording the training configuration")?,
        tasks: tasks
            .iter()
            .map(|t| TaskIdentity { name: t.task.name.clone(), train: t.train.len(), dev: t.dev.len() })
            .collect(),
        sources: sources.iter().map(|s| s.name.clone()).collect(),
        precision: Some(crate::model::ops::blas::gemm_backend().precision().to_string()),
    };
    let mut state = ResumeState::default();
    let mut best_state = None;
    let mut last_checkpoint = None;
    if options.resume {
        let dir = run_dir.as_ref().context("--resume needs a run directory")?;
        state = dir.read_resume_state()?;
        let differences = state.started_with.as_ref().map(|then| then.differences(&identity)).unwrap_or_default();
        if !differences.is_empty() {
            bail!(
                "cannot resume {}: this command would continue the run with other settings than it was started with:\n  {}\n\
                 Run it with the run's own settings (they are in {}), or start a new run: drop --resume, or pass another --run-dir",
                dir.path.display(),
                differences.join("\n  "),
                dir.file(RESUME_STATE).display()
            );
        }
        let last = load_tensors(&dir.file(LAST_CHECKPOINT), &device)?;
        model.load_state_dict(&last)?;
        last_checkpoint = Some(last);
        if dir.file(CHECKPOINT).exists() {
            best_state = Some(load_tensors(&dir.file(CHECKPOINT), &device)?);
        }
    }

    let total_examples: usize = tasks.iter().map(|t| t.train.len()).sum();
    let steps_per_epoch = total_examples.div_ceil(config.batch_size);
    let mut total_steps = steps_per_epoch.saturating_mul(config.epochs);
    if let Some(max) = config.max_steps {
        total_steps = if config.epochs == 0 { max } else { total_steps.min(max) };
    }
    let epochs = total_steps.div_ceil(steps_per_epoch);
    let warmup = (config.warmup_ratio * total_steps as f64).round() as usize;
    let prompt_vars = model.prompt_vars();
    let is_trained = |name: &str| config.train_heads || !name.contains(".head.");
    let other_vars: Vec<_> = model.other_vars().into_iter().filter(|(n, _)| is_trained(n)).collect();
    let all_vars: Vec<_> = prompt_vars.iter().chain(&other_vars).map(|(_, v)| v.clone()).collect();
    let mut optim = Optimizers::new(prompt_vars, other_vars, config.lr_prompt, config.lr_other, config.weight_decay)?;
    let mut notes = Vec::new();
    if let Some(last) = &last_checkpoint {
        match optim.load_from(last)? {
            Some(saved) if saved != state.step => bail!(
                "cannot resume: {} is from step {saved} but {} from step {}; the run was stopped while saving. \
                 Start it again without --resume",
                LAST_CHECKPOINT,
                RESUME_STATE,
                state.step
            ),
            Some(_) => {}
            None => notes.push(format!(
                "{LAST_CHECKPOINT} has no optimiser state (written by an older attempt-pkg); AdamW restarts from zero moments"
            )),
        }
    }
    // A resumed run may have been extended (epochs, max_steps): keep what it goes on with.
    state.started_with = Some(identity);
    // Everything `--resume` needs, written last-checkpoint first: resume.json is the commit point.
    let save_resumable = |dir: &RunDir, state: &ResumeState, optim: &Optimizers| -> Result<()> {
        let mut tensors = model.state_dict()?;
        optim.save_into(&mut tensors)?;
        save_tensors(&dir.file(LAST_CHECKPOINT), &tensors)?;
        dir.write_json(RESUME_STATE, state)
    };

    let bar = progress_bar(options.progress, total_steps);
    bar.set_position(state.step as u64);
    let mut step = state.step;
    let mut final_loss = f32::NAN;
    let mut checked_gradients = std::collections::BTreeSet::new();
    let mut step_seconds = Vec::new();
    let mut interrupted = false;

    let sizes: Vec<usize> = tasks.iter().map(|t| t.train.len()).collect();
    // Every training example is tokenised once per run, when first needed.
    let mut token_caches: Vec<TokenCache> =
        tasks.iter().map(|t| TokenCache::new(t.train.len(), config.max_length)).collect();
    // Token lengths, when batches are grouped by them (this fills the caches).
    let lengths = if config.group_by_length {
        let mut lengths = Vec::with_capacity(tasks.len());
        for (t, cache) in tasks.iter().zip(&mut token_caches) {
            let task_lengths: Result<Vec<usize>> =
                t.train.iter().enumerate().map(|(i, e)| Ok(cache.ids(i, e, tokenizer)?.len())).collect();
            lengths.push(task_lengths?);
        }
        Some(lengths)
    } else {
        None
    };
    'epochs: for epoch in state.epochs_done..epochs {
        bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        let started = Instant::now();
        let batches = epoch_batches(&sizes, lengths.as_deref(), config.batch_size, config.seed, epoch);
        // A run interrupted mid-epoch resumes after the batches it took.
        let done =
            if epoch == state.epochs_done { std::mem::take(&mut state.partial_epoch) } else { PartialEpoch::default() };
        let skip = done.batches;
        let (mut loss_sum, mut loss_n) = (done.loss_sum, done.examples);
        for (batch, chunk) in batches.iter().enumerate().skip(skip) {
            if step >= total_steps {
                break;
            }
            let t0 = Instant::now();
            let loss = batch_loss(&model, encoder, tokenizer, &tasks, &mut token_caches, chunk, &device)?;
            let mut grads = loss.backward()?;
            // A detaching op anywhere in the path leaves a Var without a
            // gradient and no error: refuse to train silently broken.
            for task in chunk.iter().map(|(t, _)| *t).collect::<std::collections::BTreeSet<_>>() {
                if checked_gradients.insert(task) {
                    for (name, var) in model.vars_for_task(task).into_iter().filter(|(n, _)| is_trained(n)) {
                        if grads.get(&var).is_none() {
                            bail!("no gradient reached `{name}`: an operation in the encoder or composition path detaches its output");
                        }
                    }
                }
            }
            clip_grad_norm(&mut grads, &all_vars, config.max_grad_norm)?;
            optim.step(&grads, linear_schedule(step, warmup, total_steps))?;
            final_loss = loss.to_scalar::<f32>()?;
            if !final_loss.is_finite() {
                bail!("training diverged (loss {final_loss}) at step {step}; lower the learning rate");
            }
            loss_sum += final_loss as f64 * chunk.len() as f64;
            loss_n += chunk.len();
            step += 1;
            let dt = t0.elapsed().as_secs_f64();
            step_seconds.push(dt);
            bar.set_message(format!(
                "loss {:.4} {:.1} ex/s",
                loss_sum / loss_n as f64,
                chunk.len() as f64 / dt.max(1e-9)
            ));
            bar.inc(1);
            if options.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
                interrupted = true;
                if let Some(dir) = &run_dir {
                    state.step = step;
                    state.partial_epoch = PartialEpoch { batches: batch + 1, loss_sum, examples: loss_n };
                    save_resumable(dir, &state, &optim)?;
                }
                break 'epochs;
            }
        }

        let last = step >= total_steps || epoch + 1 == epochs;
        if !last && (epoch + 1) % config.eval_every.max(1) != 0 {
            state.epochs_done = epoch + 1;
            state.step = step;
            continue;
        }
        // Evaluate, select, record.
        let mut record = EpochRecord {
            epoch: epoch + 1,
            step,
            train_loss: if loss_n > 0 { loss_sum / loss_n as f64 } else { f64::NAN },
            tasks: BTreeMap::new(),
            score: 0.0,
            seconds: started.elapsed().as_secs_f64(),
            prompt_row_norms: model
                .tasks
                .iter()
                .map(|t| Ok((t.task.name.clone(), super::model::mean_row_norm(t.target.as_tensor())?)))
                .collect::<Result<_>>()?,
        };
        let evals = evaluate_all(&model, encoder, tokenizer, &tasks, &config, &device)?;
        record.score = selection_score(&model, &evals);
        for e in &evals {
            record.tasks.insert(e.task.clone(), e.metrics.clone());
        }
        bar.println(format!(
            "epoch {}: loss {:.4}, dev {}",
            epoch + 1,
            record.train_loss,
            evals.iter().map(|e| format!("{} {}", e.task, fmt_metrics(&e.metrics))).collect::<Vec<_>>().join("; ")
        ));
        let better = state.best_score.is_none_or(|b| record.score > b || (b.is_nan() && !record.score.is_nan()));
        if better {
            state.best_score = Some(record.score);
            state.best_epoch = Some(epoch + 1);
            let snapshot = model.state_dict()?;
            if let Some(dir) = &run_dir {
                save_tensors(&dir.file(CHECKPOINT), &snapshot)?;
                for (i, e) in evals.iter().enumerate() {
                    if let Some(w) = &e.mean_attention {
                        dir.write_attention(&model.tasks[i].task.name, &e.mixture_names, w)?;
                    }
                }
            }
            best_state = Some(snapshot);
        }
        state.history.push(record);
        state.epochs_done = epoch + 1;
        state.step = step;
        if let Some(dir) = &run_dir {
            dir.write_json(METRICS, &state.history)?;
            save_resumable(dir, &state, &optim)?;
        }
        if step >= total_steps {
            break;
        }
    }
    bar.finish_and_clear();

    if let Some(best) = &best_state {
        model.load_state_dict(best)?;
    }
    let best_eval = evaluate_all(&model, encoder, tokenizer, &tasks, &config, &device)?;
    let trainable: usize = model.named_vars().iter().filter(|(n, _)| is_trained(n)).map(|(_, v)| v.elem_count()).sum();
    if let Some(dir) = &run_dir {
        let backbone = options.provenance.backbone_parameters;
        dir.write_json(
            RUN_RECORD,
            &RunRecord {
                tool: env!("CARGO_PKG_NAME").to_string(),
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
                candle_version: "0.11".to_string(),
                config: config.clone(),
                tasks: defs.iter().map(|t| t.name.clone()).collect(),
                task_defs: defs.clone(),
                source_names: model.source_names.clone(),
                prompt_length: model.prompt_length,
                hidden_size: model.hidden_size,
                provenance: options.provenance.clone(),
                trainable_parameters: trainable,
                trainable_percent_of_backbone: (backbone > 0).then(|| 100.0 * trainable as f64 / backbone as f64),
                steps: step,
                best_epoch: state.best_epoch,
                best_score: state.best_score,
                interrupted,
                kernels: Some(RunKernels::current()),
            },
        )?;
    }
    Ok(TrainOutcome {
        model,
        history: state.history,
        best_epoch: state.best_epoch,
        best_score: state.best_score,
        best_eval,
        final_loss,
        steps: step,
        trainable_parameters: trainable,
        interrupted,
        step_seconds,
        notes,
    })
}

fn fmt_metrics(m: &BTreeMap<String, f64>) -> String {
    m.iter().map(|(k, v)| format!("{k}={v:.4}")).collect::<Vec<_>>().join(" ")
}

/// Loss of a mixed-task batch: each task's examples go through their own
/// target prompt and head; losses are weighted by the task's share.
/// How many training inputs [`pooled_input_stats`] reads at most: the
/// per-feature mean and spread of a few thousand max-pooled embeddings are
/// stable, and more only costs time.
const STANDARDISE_SAMPLE: usize = 4096;

/// Per-feature mean and standard deviation of G's max-pooled input over
/// (evenly spaced) training examples of every task: what G's input is
/// standardised with. Deterministic: no sampling.
fn pooled_input_stats(
    g: &crate::compose::AttentionModule,
    encoder: &dyn Encoder,
    tokenizer: &dyn TextEncoder,
    tasks: &[TaskData],
    max_length: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let all: Vec<&Example> = tasks.iter().flat_map(|t| &t.train).collect();
    let stride = all.len().div_ceil(STANDARDISE_SAMPLE).max(1);
    let sample: Vec<&Example> = all.into_iter().step_by(stride).collect();
    let mut sums: Option<(Tensor, Tensor)> = None;
    for chunk in sample.chunks(64) {
        let batch = collate(chunk, tokenizer, max_length, device)?;
        let pooled = g.pool(&encoder.embed_tokens(&batch.ids)?, &batch.mask)?.to_dtype(candle_core::DType::F64)?;
        let (s, sq) = (pooled.sum(0)?, pooled.sqr()?.sum(0)?);
        sums = Some(match sums {
            Some((acc, acc_sq)) => ((acc + s)?, (acc_sq + sq)?),
            None => (s, sq),
        });
    }
    let (sum, sum_sq) = sums.context("no training examples to standardise the attention input with")?;
    let n = sample.len() as f64;
    let mean = (sum / n)?;
    let var = ((sum_sq / n)? - mean.sqr()?)?.relu()?;
    Ok((mean.to_dtype(candle_core::DType::F32)?, var.sqrt()?.to_dtype(candle_core::DType::F32)?))
}

fn batch_loss(
    model: &PromptModel,
    encoder: &dyn Encoder,
    tokenizer: &dyn TextEncoder,
    tasks: &[TaskData],
    token_caches: &mut [TokenCache],
    chunk: &[(usize, usize)],
    device: &Device,
) -> Result<Tensor> {
    let mut by_task: BTreeMap<usize, Vec<(usize, &Example)>> = BTreeMap::new();
    for &(t, i) in chunk {
        by_task.entry(t).or_default().push((i, &tasks[t].train[i]));
    }
    let mut total: Option<Tensor> = None;
    for (t, examples) in by_task {
        let batch = token_caches[t].collate(&examples, tokenizer, device)?;
        let fwd = model.forward(encoder, t, &batch)?;
        let labels: Vec<Label> = examples.iter().map(|(_, e)| e.label).collect();
        let loss = (model.loss(t, &fwd.outputs, &labels)? * (examples.len() as f64 / chunk.len() as f64))?;
        total = Some(match total {
            Some(acc) => (acc + loss)?,
            None => loss,
        });
    }
    total.context("empty batch")
}

fn evaluate_all(
    model: &PromptModel,
    encoder: &dyn Encoder,
    tokenizer: &dyn TextEncoder,
    tasks: &[TaskData],
    config: &TrainConfig,
    device: &Device,
) -> Result<Vec<EvalResult>> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let n = config.max_eval_examples.unwrap_or(t.dev.len()).min(t.dev.len());
            evaluate(
                model,
                Backbone { encoder, tokenizer, device },
                i,
                &t.dev[..n],
                config.eval_batch_size,
                config.max_length,
            )
        })
        .collect()
}

/// Mean over tasks of each task's primary metric.
fn selection_score(model: &PromptModel, evals: &[EvalResult]) -> f64 {
    let vals: Vec<f64> = evals
        .iter()
        .enumerate()
        .map(|(i, e)| e.metrics.get(model.tasks[i].task.primary_metric().as_str()).copied().unwrap_or(f64::NAN))
        .collect();
    vals.iter().sum::<f64>() / vals.len().max(1) as f64
}

/// Rebuild a trained model from a run directory (best checkpoint) for
/// `eval`, `predict` or further packaging. `sources` must be the run's source
/// prompts in the same order (as its lockfile resolves them).
pub fn load_run(
    run_dir: &std::path::Path,
    encoder: &dyn Encoder,
    tokenizer: &dyn TextEncoder,
    sources: &[SourcePrompt],
    device: &Device,
) -> Result<(PromptModel, super::rundir::RunRecord)> {
    let dir = RunDir { path: run_dir.to_path_buf() };
    let record = dir.read_run_record()?;
    if encoder.hidden_size() != record.hidden_size {
        bail!(
            "run {} was trained on a model with hidden size {}, this model has {}",
            run_dir.display(),
            record.hidden_size,
            encoder.hidden_size()
        );
    }
    let given: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    if given != record.source_names {
        bail!(
            "run {} was trained with sources [{}] but [{}] were given; use the lockfile the run was trained with",
            run_dir.display(),
            record.source_names.join(", "),
            given.join(", ")
        );
    }
    // Values are overwritten from the checkpoint: initialise cheaply.
    let config = TrainConfig {
        target_init: Some(crate::compose::TargetInit::Random { scale: 0.0 }),
        prompt_length: record.prompt_length,
        ..record.config.clone()
    };
    let mut rng = StdRng::seed_from_u64(0);
    let model = PromptModel::new(encoder, tokenizer, sources, &record.task_defs, &config, &mut rng, device)?;
    model.load_state_dict(&load_tensors(&dir.file(CHECKPOINT), device)?)?;
    Ok((model, record))
}
