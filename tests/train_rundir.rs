//! Run directory contents, resume, interruption, the gradient-flow guard and
//! export of trained prompts as authoring directories.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use attempt_pkg::compose::Method;
use attempt_pkg::data::synthetic::{generate, synthetic_task, synthetic_vocabulary};
use attempt_pkg::data::{TextEncoder, WordTokenizer};
use attempt_pkg::model::Encoder;
use attempt_pkg::train::testing::TinyEncoder;
use attempt_pkg::train::{
    export_from_run, load_run, predict, train, training_info, write_authoring_dir, Backbone, PackageInfo,
    PredictedLabel, RunProvenance, SourcePrompt, TaskData, TrainConfig, TrainOptions, TrainOutcome, TrainRequest,
};
use candle_core::{Device, Tensor};

const D: usize = 16;
const M: usize = 3;

fn data(name: &str, n: usize) -> TaskData {
    let all = generate(name, n + 40, 3).unwrap();
    TaskData { task: synthetic_task(name).unwrap(), train: all[..n].to_vec(), dev: all[n..].to_vec() }
}

fn cfg(method: Method, epochs: usize) -> TrainConfig {
    TrainConfig {
        method,
        prompt_length: M,
        epochs,
        batch_size: 8,
        max_length: 16,
        lr_other: 0.03,
        seed: 9,
        ..TrainConfig::default()
    }
}

fn sources() -> Vec<SourcePrompt> {
    (0..2)
        .map(|i| SourcePrompt {
            name: format!("s{i}@0.1.0"),
            tensor: Tensor::from_vec(
                (0..M * D).map(|k| ((k * (i + 3)) % 7) as f32 / 7.0 - 0.5).collect(),
                (M, D),
                &Device::Cpu,
            )
            .unwrap(),
        })
        .collect()
}

fn go(
    enc: &dyn Encoder,
    cfg: TrainConfig,
    srcs: Vec<SourcePrompt>,
    opts: &TrainOptions,
) -> anyhow::Result<TrainOutcome> {
    let tok = WordTokenizer::new(synthetic_vocabulary());
    train(
        TrainRequest {
            encoder: enc,
            tokenizer: &tok,
            sources: srcs,
            tasks: vec![data("sentiment", 48)],
            config: cfg,
            device: Device::Cpu,
        },
        opts,
    )
}

fn encoder() -> TinyEncoder {
    let tok = WordTokenizer::new(synthetic_vocabulary());
    TinyEncoder::new(tok.vocab_size(), D, 1, &Device::Cpu).unwrap()
}

#[test]
fn run_directory_holds_checkpoint_metrics_attention_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let enc = encoder();
    let opts = TrainOptions {
        run_dir: Some(run.clone()),
        provenance: RunProvenance {
            model_fingerprint: format!("sha256:{}", "a".repeat(64)),
            backbone_parameters: enc.parameter_count(),
            ..Default::default()
        },
        ..Default::default()
    };
    let o = go(&enc, cfg(Method::Attempt, 2), sources(), &opts).unwrap();
    for f in [
        "checkpoint.safetensors",
        "last.safetensors",
        "metrics.json",
        "run.json",
        "resume.json",
        "attention-sentiment.csv",
        "attention-sentiment.svg",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics.as_array().unwrap().len(), 2);
    assert!(metrics[1]["tasks"]["sentiment"]["accuracy"].is_number());
    let csv = std::fs::read_to_string(run.join("attention-sentiment.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "prompt,weight");
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[3].starts_with("target:sentiment,"));
    let total: f64 = rows[1..].iter().map(|r| r.rsplit(',').next().unwrap().parse::<f64>().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4);
    assert!(std::fs::read_to_string(run.join("attention-sentiment.svg")).unwrap().contains("<svg"));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["trainable_parameters"], o.trainable_parameters);
    assert_eq!(record["config"]["method"], "attempt");
    // The kernels it ran on are recorded (results differ across them in the last bits).
    let kernels = attempt_pkg::train::rundir::RunKernels::current();
    assert_eq!(record["kernels"]["gemm"], kernels.gemm.as_str());
    assert_eq!(record["kernels"]["kernel_path"], kernels.kernel_path.as_str());
    let pct = record["trainable_percent_of_backbone"].as_f64().unwrap();
    assert!((pct - 100.0 * o.trainable_parameters as f64 / enc.parameter_count() as f64).abs() < 1e-9);
    // The checkpoint has exactly the trainable tensors.
    let ck = candle_core::safetensors::load(run.join("checkpoint.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<_> = ck.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "attention.layer_norm.bias",
            "attention.layer_norm.weight",
            "attention.w_down",
            "attention.w_up",
            "task.sentiment.head.bias",
            "task.sentiment.head.weight",
            "task.sentiment.prompt"
        ]
    );
}

#[test]
fn resume_continues_where_the_run_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let enc = encoder();
    let opts = TrainOptions { run_dir: Some(run.clone()), ..Default::default() };
    let first = go(&enc, cfg(Method::Pt, 2), vec![], &opts).unwrap();
    assert_eq!(first.history.len(), 2);
    let resumed = go(&enc, cfg(Method::Pt, 4), vec![], &TrainOptions { resume: true, ..opts }).unwrap();
    assert_eq!(resumed.history.len(), 4);
    // The first two epochs' records are read back from resume.json: identical.
    assert_eq!(resumed.history[..2], first.history[..2]);
    assert_eq!(resumed.steps, 4 * 6);
    // Resuming without a run directory is refused.
    let err = go(&enc, cfg(Method::Pt, 1), vec![], &TrainOptions { resume: true, ..Default::default() }).err().unwrap();
    assert!(err.to_string().contains("run directory"), "{err}");
}

#[test]
fn resuming_with_other_settings_tasks_or_sources_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let enc = encoder();
    let flag = Some(Arc::new(AtomicBool::new(true)));
    let opts = TrainOptions { run_dir: Some(run.clone()), ..Default::default() };
    go(&enc, cfg(Method::Attempt, 2), sources(), &TrainOptions { interrupt: flag, ..opts.clone() }).unwrap();
    let files = |p: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = files(&run);
    let resume = TrainOptions { resume: true, ..opts.clone() };
    let other_lr = TrainConfig { lr_prompt: 0.05, ..cfg(Method::Attempt, 2) };
    let msg = format!("{:#}", go(&enc, other_lr, sources(), &resume).err().expect("another learning rate is refused"));
    assert!(msg.contains("lr-prompt: 0.3 when started, 0.05 now") && msg.contains("drop --resume"), "{msg}");
    let other_scores = {
        let mut c = cfg(Method::Attempt, 2);
        c.attention.scores = attempt_pkg::compose::AttentionScores::Cosine;
        c
    };
    let msg = format!("{:#}", go(&enc, other_scores, sources(), &resume).err().expect("other attention is refused"));
    assert!(msg.contains("attention.scores"), "{msg}");
    let msg = format!("{:#}", go(&enc, cfg(Method::Attempt, 2), sources()[..1].to_vec(), &resume).err().unwrap());
    assert!(msg.contains("sources: ") && msg.contains(" now"), "{msg}");
    let msg = format!("{:#}", go(&enc, cfg(Method::Pt, 2), vec![], &resume).err().unwrap());
    assert!(msg.contains("method") && msg.contains("sources: "), "{msg}");
    assert_eq!(files(&run), before, "a refused resume writes nothing");
    // The same settings with more epochs continue the run.
    let resumed = go(&enc, cfg(Method::Attempt, 3), sources(), &resume).unwrap();
    assert!(!resumed.interrupted);
    assert_eq!(resumed.history.len(), 3);
}

#[test]
fn interruption_stops_and_leaves_a_resumable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let enc = encoder();
    let flag = Arc::new(AtomicBool::new(true));
    let o = go(
        &enc,
        cfg(Method::Pt, 3),
        vec![],
        &TrainOptions { run_dir: Some(run.clone()), interrupt: Some(flag), ..Default::default() },
    )
    .unwrap();
    assert!(o.interrupted);
    assert_eq!(o.steps, 1);
    assert!(run.join("last.safetensors").is_file());
    let resumed =
        go(&enc, cfg(Method::Pt, 1), vec![], &TrainOptions { run_dir: Some(run), resume: true, ..Default::default() })
            .unwrap();
    assert!(!resumed.interrupted);
    assert_eq!(resumed.history.len(), 1);
}

#[test]
fn interrupted_and_resumed_run_matches_an_uninterrupted_one_exactly() {
    // 48 examples / batch 8 = 6 steps an epoch, 2 epochs. The resumed runs
    // stop after one step each time (the flag is already set), mid-epoch, at
    // an epoch boundary and in the second epoch; AdamW moments, the step count
    // and the place in the epoch's order must all carry over.
    let enc = encoder();
    let straight = go(&enc, cfg(Method::Attempt, 2), sources(), &TrainOptions::default()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let interrupt = || TrainOptions {
        run_dir: Some(run.clone()),
        interrupt: Some(Arc::new(AtomicBool::new(true))),
        ..Default::default()
    };
    let first = go(&enc, cfg(Method::Attempt, 2), sources(), &interrupt()).unwrap();
    assert!(first.interrupted && first.steps == 1);
    let mut steps = vec![first.steps];
    for _ in 0..6 {
        let o = go(&enc, cfg(Method::Attempt, 2), sources(), &TrainOptions { resume: true, ..interrupt() }).unwrap();
        assert!(o.interrupted);
        steps.push(o.steps);
    }
    assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7]);
    let resumed = go(
        &enc,
        cfg(Method::Attempt, 2),
        sources(),
        &TrainOptions { run_dir: Some(run.clone()), resume: true, ..Default::default() },
    )
    .unwrap();
    assert!(!resumed.interrupted);
    assert_eq!(resumed.steps, 12);
    // Everything per epoch but the wall time: losses, dev metrics, steps.
    let untimed = |o: &TrainOutcome| {
        o.history
            .iter()
            .map(|r| attempt_pkg::train::rundir::EpochRecord { seconds: 0.0, ..r.clone() })
            .collect::<Vec<_>>()
    };
    assert_eq!(untimed(&resumed), untimed(&straight), "losses and dev metrics per epoch");
    let (a, b) = (straight.model.state_dict().unwrap(), resumed.model.state_dict().unwrap());
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let (x, y) = (
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b[name].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(x == y, "`{name}` differs after resuming");
    }
    // The checkpoint carries the optimiser state next to the trainable tensors.
    let last = candle_core::safetensors::load(run.join("last.safetensors"), &Device::Cpu).unwrap();
    assert!(
        last.contains_key("optimizer.step")
            && last.contains_key("optimizer.m.task.sentiment.prompt")
            && last.contains_key("optimizer.v.attention.w_down")
    );
}

#[test]
fn length_grouped_batches_resume_exactly_and_change_the_run() {
    let enc = encoder();
    let grouped = || TrainConfig { group_by_length: true, ..cfg(Method::Attempt, 2) };
    let straight = go(&enc, grouped(), sources(), &TrainOptions::default()).unwrap();
    assert_eq!(straight.steps, 12, "48 examples in batches of 8, two epochs: every example once an epoch");
    let plain = go(&enc, cfg(Method::Attempt, 2), sources(), &TrainOptions::default()).unwrap();
    assert_ne!(
        straight.history.iter().map(|r| r.train_loss).collect::<Vec<_>>(),
        plain.history.iter().map(|r| r.train_loss).collect::<Vec<_>>(),
        "grouping changes which examples share a batch"
    );
    // Interrupted after every step for the first five (mid-epoch), resumed each time: the same run.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let interrupt = |resume: bool| TrainOptions {
        run_dir: Some(run.clone()),
        interrupt: Some(Arc::new(AtomicBool::new(true))),
        resume,
        ..Default::default()
    };
    for step in 1..=5 {
        let o = go(&enc, grouped(), sources(), &interrupt(step > 1)).unwrap();
        assert!(o.interrupted && o.steps == step);
    }
    let resumed = go(
        &enc,
        grouped(),
        sources(),
        &TrainOptions { run_dir: Some(run.clone()), resume: true, ..Default::default() },
    )
    .unwrap();
    assert_eq!(resumed.steps, 12);
    let (a, b) = (straight.model.state_dict().unwrap(), resumed.model.state_dict().unwrap());
    for (name, t) in &a {
        let (x, y) = (
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b[name].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(x == y, "`{name}` differs after resuming a length-grouped run");
    }
}

#[test]
fn resuming_refuses_a_checkpoint_that_does_not_match_resume_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let enc = encoder();
    let flag = Some(Arc::new(AtomicBool::new(true)));
    go(
        &enc,
        cfg(Method::Pt, 2),
        vec![],
        &TrainOptions { run_dir: Some(run.clone()), interrupt: flag, ..Default::default() },
    )
    .unwrap();
    // As if the process died between writing last.safetensors and resume.json.
    let path = run.join("resume.json");
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["step"] = 0.into();
    std::fs::write(&path, state.to_string()).unwrap();
    let err =
        go(&enc, cfg(Method::Pt, 2), vec![], &TrainOptions { run_dir: Some(run), resume: true, ..Default::default() })
            .err()
            .unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("step 1") && msg.contains("step 0") && msg.contains("without --resume"), "{msg}");
}

/// Encoder whose output is cut off from its input, as candle's fused
/// kernels do silently.
struct Detaching(TinyEncoder);
impl Encoder for Detaching {
    fn embed_tokens(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.0.embed_tokens(ids)
    }
    fn encode(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.0.encode(x, mask)?.detach())
    }
    fn hidden_size(&self) -> usize {
        self.0.hidden_size()
    }
}

#[test]
fn a_detached_path_is_refused_on_the_first_step() {
    let err = go(&Detaching(encoder()), cfg(Method::Attempt, 1), sources(), &TrainOptions::default()).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("no gradient reached `task.sentiment.prompt`"), "{msg}");
}

#[test]
fn mismatched_source_width_is_refused() {
    let bad = vec![SourcePrompt {
        name: "wide@1.0.0".into(),
        tensor: Tensor::zeros((M, D + 1), candle_core::DType::F32, &Device::Cpu).unwrap(),
    }];
    let err = go(&encoder(), cfg(Method::Attempt, 1), bad, &TrainOptions::default()).err().unwrap();
    assert!(err.to_string().contains("wide@1.0.0"), "{err}");
}

fn info() -> PackageInfo {
    PackageInfo {
        name: "sentiment-prompt".into(),
        version: "0.1.0".into(),
        task: "sentiment".into(),
        description: "Synthetic \"sentiment\" prompt".into(),
        license: "Apache-2.0".into(),
        base_model_name: "tiny".into(),
        base_model_fingerprint: format!("sha256:{}", "0123456789abcdef".repeat(4)),
        signature: None,
    }
}

#[test]
fn source_training_exports_an_authoring_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let enc = encoder();
    let config = cfg(Method::Pt, 2);
    let o =
        go(&enc, config.clone(), vec![], &TrainOptions { run_dir: Some(run.clone()), ..Default::default() }).unwrap();
    let training = training_info(&o, &config, 0, "synthetic:sentiment").unwrap();
    let out = dir.path().join("sentiment-prompt");
    write_authoring_dir(&out, &info(), &training, o.model.tasks[0].target.as_tensor(), false).unwrap();

    let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(out.join("Prompt.toml")).unwrap()).unwrap();
    assert_eq!(manifest["package"]["name"].as_str(), Some("sentiment-prompt"));
    assert_eq!(manifest["package"]["description"].as_str(), Some("Synthetic \"sentiment\" prompt"));
    assert_eq!(manifest["base-model"]["hidden-size"].as_integer(), Some(D as i64));
    assert_eq!(manifest["base-model"]["fingerprint"].as_str(), Some(info().base_model_fingerprint.as_str()));
    assert_eq!(manifest["prompt"]["file"].as_str(), Some("prompt.safetensors"));
    assert_eq!(manifest["provenance"]["training-method"].as_str(), Some("pt"));
    assert_eq!(manifest["provenance"]["training-steps"].as_str(), Some(o.steps.to_string().as_str()));
    assert!(manifest["metrics"]["accuracy"].as_float().is_some_and(|a| (0.0..=1.0).contains(&a)), "{manifest}");
    // What train-source writes is what publish accepts.
    attempt_pkg::package::Artifact::build(&out).unwrap();
    let t = candle_core::safetensors::load(out.join("prompt.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(t["prompt"].dims(), &[M, D]);
    assert_eq!(t["prompt"].to_vec2::<f32>().unwrap(), o.model.tasks[0].target.as_tensor().to_vec2::<f32>().unwrap());

    // Existing manifests are not replaced silently; bad fingerprints are refused.
    assert!(write_authoring_dir(&out, &info(), &training, o.model.tasks[0].target.as_tensor(), false).is_err());
    let bad = PackageInfo { base_model_fingerprint: "sha256:xyz".into(), ..info() };
    assert!(write_authoring_dir(
        &dir.path().join("other"),
        &bad,
        &training,
        o.model.tasks[0].target.as_tensor(),
        false
    )
    .is_err());
    assert!(!dir.path().join("other").exists());

    // package --from-run: the best checkpoint's target prompt.
    let out2 = dir.path().join("from-run");
    export_from_run(&run, "sentiment", &out2, &info(), &training, false).unwrap();
    let t2 = candle_core::safetensors::load(out2.join("prompt.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(t2["prompt"].dims(), &[M, D]);
    let err = export_from_run(&run, "topic", &dir.path().join("x"), &info(), &training, false).err().unwrap();
    assert!(err.to_string().contains("sentiment"), "{err}");
}

#[test]
fn a_finished_run_reloads_for_eval_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let enc = encoder();
    let tok = WordTokenizer::new(synthetic_vocabulary());
    let o = go(
        &enc,
        cfg(Method::Attempt, 2),
        sources(),
        &TrainOptions { run_dir: Some(run.clone()), ..Default::default() },
    )
    .unwrap();
    let (model, record) = load_run(&run, &enc, &tok, &sources(), &Device::Cpu).unwrap();
    assert_eq!(record.task_defs[0].name, "sentiment");
    assert_eq!(model.state_dict().unwrap().len(), o.model.state_dict().unwrap().len());
    let backbone = Backbone { encoder: &enc, tokenizer: &tok, device: &Device::Cpu };
    let dev = &data("sentiment", 48).dev;
    let again = attempt_pkg::train::evaluate(&model, backbone, 0, dev, 16, 16).unwrap();
    // Accuracy comes from the argmax, promised exact although the batches differ
    // (training evaluated the 40 dev examples in one batch, this in batches of 16).
    assert_eq!(again.metrics, o.best_eval[0].metrics);
    let p = predict(&model, backbone, "sentiment", &dev[0].text_a, None, 16).unwrap();
    // One example runs the matrix products at another shape than the batched
    // evaluation (16 rows), and gemm may then block and sum in another order
    // (it does with AVX-512): the predicted class is promised to be the same,
    // the probabilities only up to rounding.
    match (&p.label, &o.best_eval[0].predictions[0]) {
        (
            PredictedLabel::Class { index, label, probabilities },
            PredictedLabel::Class { index: batched_index, label: batched_label, probabilities: batched },
        ) => {
            assert_eq!((index, label), (batched_index, batched_label));
            assert!(label == "positive" || label == "negative");
            assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert_eq!(probabilities.len(), batched.len());
            for (single, in_batch) in probabilities.iter().zip(batched) {
                assert!((single - in_batch).abs() <= 1e-5, "{probabilities:?} vs batched {batched:?}");
            }
        }
        other => panic!("expected classes, got {other:?}"),
    }
    let names: Vec<&str> = p.attention.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["s0@0.1.0", "s1@0.1.0", "target:sentiment"]);
    // Other sources than the run's are refused, naming both sets.
    let mut wrong = sources();
    wrong.reverse();
    let err = load_run(&run, &enc, &tok, &wrong, &Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("s0@0.1.0, s1@0.1.0"), "{err}");
    assert!(predict(&model, backbone, "topic", "x", None, 16).is_err());
}

#[test]
fn train_source_prompt_writes_a_publishable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let enc = encoder();
    let tok = WordTokenizer::new(synthetic_vocabulary());
    let out = dir.path().join("pkg");
    let request = TrainRequest {
        encoder: &enc,
        tokenizer: &tok,
        sources: vec![],
        tasks: vec![data("sentiment", 48)],
        config: cfg(Method::Attempt, 1), // forced to pt
        device: Device::Cpu,
    };
    let o = attempt_pkg::train::train_source_prompt(
        request,
        &TrainOptions::default(),
        &info(),
        "synthetic:sentiment",
        &[],
        &out,
        false,
    )
    .unwrap();
    assert_eq!(o.model.method(), Method::Pt);
    let text = std::fs::read_to_string(out.join("Prompt.toml")).unwrap();
    assert!(
        text.contains("[base-model]") && text.contains("[provenance]") && text.contains("training-method = \"pt\""),
        "{text}"
    );
    assert!(out.join("prompt.safetensors").is_file());
    // The own-task check is recorded next to the metric and reads back as
    // what the trained model scored on the dev examples it was evaluated on.
    let manifest: attempt_pkg::package::Manifest = toml::from_str(&text).unwrap();
    let check = attempt_pkg::data::baseline::OwnTaskCheck::from_manifest(&manifest.metrics).expect("recorded");
    assert_eq!(check.metric, "accuracy");
    assert_eq!(check.value, manifest.metrics["accuracy"]);
    assert_eq!(
        check.examples,
        data("sentiment", 48).dev.len().min(cfg(Method::Pt, 1).max_eval_examples.unwrap_or(usize::MAX))
    );
    assert!((0.0..=1.0).contains(&check.baseline) && check.gain_stderr >= 0.0, "{check:?}");
}

#[test]
fn suggest_ranks_every_candidate_by_attention() {
    let enc = encoder();
    let tok = WordTokenizer::new(synthetic_vocabulary());
    let mut srcs = sources();
    srcs.push(SourcePrompt { name: "big@1.0.0".into(), tensor: (srcs[0].tensor.clone() * 4.0).unwrap() });
    let request = TrainRequest {
        encoder: &enc,
        tokenizer: &tok,
        sources: srcs,
        tasks: vec![data("sentiment", 48)],
        config: cfg(Method::Pt, 1),
        device: Device::Cpu,
    };
    let s = attempt_pkg::train::suggest_sources(request, 5, Some(2)).unwrap();
    assert_eq!(s.probe_steps, 5);
    assert_eq!(s.ranking.len(), 3);
    assert!(s.ranking.windows(2).all(|w| w[0].attention >= w[1].attention));
    let total: f32 = s.ranking.iter().map(|r| r.attention).sum::<f32>() + s.target_attention;
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    assert!(!s.keep.is_empty() && s.keep.len() <= 2);
    assert_eq!(s.keep.len() + s.remove.len(), 3);
    assert_eq!(s.keep[0], s.ranking[0].name);
}

/// A two-epoch ATTEMPT run in a fresh run directory, with G configured by
/// `configure`: (the directory's guard, the run directory, the outcome).
fn attempt_run(
    enc: &TinyEncoder,
    configure: impl FnOnce(&mut attempt_pkg::compose::AttentionConfig),
) -> (tempfile::TempDir, std::path::PathBuf, TrainOutcome) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut config = cfg(Method::Attempt, 2);
    configure(&mut config.attention);
    let o = go(enc, config, sources(), &TrainOptions { run_dir: Some(run.clone()), ..Default::default() }).unwrap();
    (dir, run, o)
}

#[test]
fn a_learned_temperature_is_trained_checkpointed_and_reloaded() {
    let enc = encoder();
    let tok = WordTokenizer::new(synthetic_vocabulary());
    let (_dir, run, o) = attempt_run(&enc, |a| {
        a.learn_temperature = true;
        a.scores = attempt_pkg::compose::AttentionScores::Cosine;
    });
    let trained = o.model.attention.as_ref().unwrap().temperature().unwrap();
    assert!(
        (trained - attempt_pkg::compose::attention::COSINE_TEMPERATURE).abs() > 1e-6,
        "the temperature moved: {trained}"
    );
    assert!(o.best_eval[0].attention_spread.is_some_and(|s| s.is_finite() && s >= 0.0));
    let (model, record) = load_run(&run, &enc, &tok, &sources(), &Device::Cpu).unwrap();
    assert!(record.config.attention.learn_temperature);
    assert_eq!(model.attention.as_ref().unwrap().temperature().unwrap(), trained, "reloaded from the checkpoint");
}

#[test]
fn a_standardised_attention_input_starts_from_the_training_statistics_and_is_checkpointed() {
    let enc = encoder();
    let tok = WordTokenizer::new(synthetic_vocabulary());
    let (_dir, run, o) = attempt_run(&enc, |a| a.standardise_input = true);
    let g = o.model.attention.as_ref().unwrap();
    let b = g.b_down.as_ref().expect("a W_down bias").as_tensor().to_vec1::<f32>().unwrap();
    assert!(b.iter().any(|v| v.abs() > 1e-6), "initialised from the data, not left at zero: {b:?}");
    let (model, record) = load_run(&run, &enc, &tok, &sources(), &Device::Cpu).unwrap();
    assert!(record.config.attention.standardise_input);
    let reloaded = model.attention.as_ref().unwrap().b_down.as_ref().unwrap().as_tensor().to_vec1::<f32>().unwrap();
    // The best checkpoint holds the bias; with two epochs it may be either one,
    // so compare with what the checkpoint file says rather than the last state.
    let saved = attempt_pkg::train::rundir::load_tensors(&run.join("checkpoint.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(reloaded, saved["attention.b_down"].to_vec1::<f32>().unwrap());
}

#[test]
fn prompt_row_norm_rescales_sources_and_the_init_and_runs_record_row_norms() {
    let enc = encoder();
    let tok = WordTokenizer::new(synthetic_vocabulary());
    let defs = [synthetic_task("sentiment").unwrap()];
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut config = cfg(Method::Attempt, 1);
    let norm_of = |t: &Tensor| attempt_pkg::train::model::mean_row_norm(t).unwrap();
    let original = norm_of(&sources()[0].tensor);
    // Default: the sources as trained.
    let m =
        attempt_pkg::train::PromptModel::new(&enc, &tok, &sources(), &defs, &config, &mut rng, &Device::Cpu).unwrap();
    assert!((norm_of(m.tasks[0].target.as_tensor()) - original).abs() < 1e-5);
    config.prompt_row_norm = Some(2.0);
    let m =
        attempt_pkg::train::PromptModel::new(&enc, &tok, &sources(), &defs, &config, &mut rng, &Device::Cpu).unwrap();
    assert!((norm_of(m.tasks[0].target.as_tensor()) - 2.0).abs() < 1e-4, "the init copied from a rescaled source");
    let stacked = m.mixture.sources.as_ref().unwrap();
    for i in 0..2 {
        assert!((norm_of(&stacked.get(i).unwrap()) - 2.0).abs() < 1e-4, "source {i} rescaled");
    }
    let o = go(&enc, config, sources(), &TrainOptions::default()).unwrap();
    let recorded = o.history[0].prompt_row_norms["sentiment"];
    assert!(recorded.is_finite() && recorded > 0.0, "{recorded}");
}
