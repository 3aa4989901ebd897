//! Loaders on small inline samples of every supported format (written to a
//! temp dir, laid out like the GLUE/SuperGLUE data directory), user-defined
//! tasks, few-shot sampling and the synthetic generators.

use std::path::Path;

use attempt_pkg::data::synthetic::{generate, synthetic_task, synthetic_task_names};
use attempt_pkg::data::{builtin_task, builtin_task_names, few_shot, load_task, Example, Label, Metric, TaskSpec};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn ex(a: &str, b: Option<&str>, label: Label) -> Example {
    Example { text_a: a.into(), text_b: b.map(Into::into), label }
}

#[test]
fn glue_and_superglue_formats_load() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "MNLI/train.json", "{\n \"0\": {\"text_a\": \"A man.\", \"text_b\": \"A person.\", \"label\": \"entailment\"},\n \"1\": {\"text_a\": \"x\", \"text_b\": \"y\", \"label\": \"contradiction\"},\n \"10\": {\"text_a\": \"p\", \"text_b\": \"q\", \"label\": \"neutral\"},\n \"2\": {\"text_a\": \"s\", \"text_b\": \"t\", \"label\": \"neutral\"}\n}");
    write(d, "MNLI/dev.json", "{\"0\": {\"text_a\": \"a\", \"text_b\": \"b\", \"label\": \"neutral\"}}");
    let mnli = load_task(&builtin_task("MNLI").unwrap(), d).unwrap();
    assert_eq!(mnli.train.len(), 4);
    assert_eq!(mnli.train[0], ex("A man.", Some("A person."), Label::Class(0)));
    // Numeric keys keep numeric order: 0, 1, 2, 10.
    assert_eq!(mnli.train[2].text_a, "s");
    assert_eq!(mnli.train[3].label, Label::Class(1));

    write(
        d,
        "QNLI/train.json",
        "{\"0\": {\"text_a\": \"Why?\", \"text_b\": \"Because.\", \"label\": \"not_entailment\"}}",
    );
    write(d, "QNLI/dev.tsv", "index\tquestion\tsentence\tlabel\n0\tWhat?\tThat.\tentailment\n");
    let qnli = load_task(&builtin_task("qnli").unwrap(), d).unwrap();
    assert_eq!(qnli.train[0].label, Label::Class(1));
    assert_eq!(qnli.dev[0], ex("What?", Some("That."), Label::Class(0)));

    // MRPC: BOM, header with spaces, bare quotes that must not be parsed.
    write(d, "MRPC/train.tsv", "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said \" the witness \" .\t\" Fine .\n0\t3\t4\tA\tB\n");
    write(d, "MRPC/dev.tsv", "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\r\n");
    let mrpc = load_task(&builtin_task("mrpc").unwrap(), d).unwrap();
    assert_eq!(mrpc.train[0], ex("He said \" the witness \" .", Some("\" Fine ."), Label::Class(1)));
    assert_eq!(mrpc.train[1].label, Label::Class(0));
    assert_eq!(mrpc.dev[0].text_b.as_deref(), Some("b"), "CRLF stripped");
    assert_eq!(builtin_task("mrpc").unwrap().metrics, vec![Metric::Accuracy, Metric::F1]);

    // CoLA: no header, label in column 1, sentence in column 3.
    write(d, "CoLA/train.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tRode the.\n");
    write(d, "CoLA/dev.tsv", "gj04\t1\t\tOk.\n");
    let cola = load_task(&builtin_task("cola").unwrap(), d).unwrap();
    assert_eq!(
        cola.train,
        vec![ex("The sailors rode the breeze.", None, Label::Class(1)), ex("Rode the.", None, Label::Class(0))]
    );
    assert_eq!(builtin_task("cola").unwrap().primary_metric(), Metric::Matthews);

    // STS-B: the last three columns, regression.
    write(d, "STS-B/train.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\tAn air plane.\t5.000\n");
    write(d, "STS-B/dev.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tg\tf\ty\to\ts\ts\tA.\tB.\t3.800\n");
    let stsb = load_task(&builtin_task("STS-B").unwrap(), d).unwrap();
    assert_eq!(stsb.train[0], ex("A plane.", Some("An air plane."), Label::Score(5.0)));
    assert_eq!(stsb.dev[0].label, Label::Score(3.8));

    write(d, "SST-2/train.tsv", "sentence\tlabel\nhide new secretions \t0\n");
    write(d, "SST-2/dev.tsv", "sentence\tlabel\ncharming \t1\n");
    let sst = load_task(&builtin_task("sst-2").unwrap(), d).unwrap();
    assert_eq!(sst.train[0], ex("hide new secretions ", None, Label::Class(0)));

    write(d, "CB/train.jsonl", "{\"premise\": \"P.\", \"hypothesis\": \"H.\", \"label\": \"neutral\", \"idx\": 0}\n");
    write(
        d,
        "CB/val.jsonl",
        "{\"premise\": \"P2\", \"hypothesis\": \"H2\", \"label\": \"contradiction\", \"idx\": 0}\n\n",
    );
    let cb = load_task(&builtin_task("cb").unwrap(), d).unwrap();
    assert_eq!(cb.train[0], ex("P.", Some("H."), Label::Class(2)));
    assert_eq!(cb.dev[0].label, Label::Class(1));

    // BoolQ: one file, JSON booleans; first 2,270 train, last 1,000 dev.
    let mut boolq = String::new();
    for i in 0..3000 {
        boolq.push_str(&format!(
            "{{\"question\": \"q{i}\", \"passage\": \"p\", \"label\": {}, \"idx\": {i}}}\n",
            i % 3 == 0
        ));
    }
    write(d, "BoolQ/val.jsonl", &boolq);
    let b = load_task(&builtin_task("boolq").unwrap(), d).unwrap();
    assert_eq!((b.train.len(), b.dev.len()), (2270, 1000));
    assert_eq!(b.train[0], ex("q0", Some("p"), Label::Class(1)));
    assert_eq!(b.dev[0].text_a, "q2000");

    // SST-5 and SUBJ: JSON objects of rows with integer labels; AG News: headerless TSV with class names.
    write(
        d,
        "SST-5/train.json",
        r#"{"0": {"text_a": "bad", "text_b": null, "label": 0}, "1": {"text_a": "great", "text_b": null, "label": 4}}"#,
    );
    write(d, "SST-5/dev.json", r#"{"0": {"text_a": "fine", "text_b": null, "label": 2}}"#);
    let s5 = load_task(&builtin_task("sst-5").unwrap(), d).unwrap();
    assert_eq!(s5.train[1], ex("great", None, Label::Class(4)));
    assert_eq!(s5.dev[0].label, Label::Class(2));
    write(d, "SUBJ/train.json", r#"{"0": {"text_a": "i think", "text_b": null, "label": 1}}"#);
    write(d, "SUBJ/dev.json", r#"{"0": {"text_a": "it is", "text_b": null, "label": 0}}"#);
    assert_eq!(load_task(&builtin_task("subj").unwrap(), d).unwrap().train[0], ex("i think", None, Label::Class(1)));
    write(d, "AGNews/train.tsv", "stocks fell\tBusiness\nthe match\tSports\n");
    write(d, "AGNews/test.tsv", "a chip\tSci/Tech\n");
    let ag = load_task(&builtin_task("agnews").unwrap(), d).unwrap();
    assert_eq!(ag.train, vec![ex("stocks fell", None, Label::Class(2)), ex("the match", None, Label::Class(1))]);
    assert_eq!(ag.dev[0].label, Label::Class(3));

    // TREC: `COARSE:fine question` lines; the coarse class is the label.
    write(d, "TREC/train.txt", "DESC:manner How did serfdom develop ?\nNUM:date When was it ?\r\n");
    write(d, "TREC/test.txt", "LOC:city Where is it ?\n");
    let trec = load_task(&builtin_task("trec").unwrap(), d).unwrap();
    assert_eq!(
        trec.train,
        vec![ex("How did serfdom develop ?", None, Label::Class(1)), ex("When was it ?", None, Label::Class(5))]
    );
    assert_eq!(trec.dev[0], ex("Where is it ?", None, Label::Class(4)));
    write(d, "TREC/test.txt", "LOC:city Where is it ?\nno label here\n");
    let err = format!("{:#}", load_task(&builtin_task("trec").unwrap(), d).unwrap_err());
    assert!(err.contains("TREC/test.txt") && err.contains("line 2") && err.contains("COARSE:fine"), "{err}");
    write(d, "TREC/test.txt", "LOC:city Where is it ?\nWHAT:x is this ?\n");
    let err = format!("{:#}", load_task(&builtin_task("trec").unwrap(), d).unwrap_err());
    assert!(err.contains("row 2") && err.contains("WHAT"), "{err}");

    assert_eq!(builtin_task_names().len(), 15);
    assert!(builtin_task("nope").is_none());
}

#[test]
fn bad_rows_name_the_file_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n");
    write(tmp.path(), "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n");
    let err = format!("{:#}", load_task(&builtin_task("rte").unwrap(), tmp.path()).unwrap_err());
    assert!(err.contains("RTE/train.tsv") && err.contains("row 2") && err.contains("maybe"), "{err}");
    let err = format!("{:#}", load_task(&builtin_task("wnli").unwrap(), tmp.path()).unwrap_err());
    assert!(err.contains("WNLI/train.tsv"), "{err}");
}

#[test]
fn user_defined_tasks_map_fields_in_csv_and_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "data/train.csv", "id,review,stars\n1,\"Great, really \"\"great\"\"\",5\n2,meh,1\n");
    write(d, "data/dev.jsonl", "{\"review\": \"fine\", \"stars\": 3}\n");
    let spec: TaskSpec = toml::from_str(
        "train = \"data/train.csv\"\ndev = \"data/dev.jsonl\"\ntext-a = \"review\"\nlabel = \"stars\"\nlabels = [\"1\", \"2\", \"3\", \"4\", \"5\"]\nmetrics = [\"accuracy\", \"macro-f1\"]\n",
    )
    .unwrap();
    let def = spec.to_task_def("reviews").unwrap();
    let t = load_task(&def, d).unwrap();
    assert_eq!(t.train, vec![ex("Great, really \"great\"", None, Label::Class(4)), ex("meh", None, Label::Class(0))]);
    assert_eq!(t.dev, vec![ex("fine", None, Label::Class(2))]);

    // Without labels the task is a regression; unknown keys are refused.
    let reg: TaskSpec = toml::from_str(
        "train = \"data/train.csv\"\ndev = \"data/train.csv\"\ntext-a = \"review\"\nlabel = \"stars\"\n",
    )
    .unwrap();
    let rt = load_task(&reg.to_task_def("stars").unwrap(), d).unwrap();
    assert_eq!(rt.train[1].label, Label::Score(1.0));
    assert_eq!(reg.to_task_def("stars").unwrap().metrics, vec![Metric::Pearson]);
    assert!(toml::from_str::<TaskSpec>("text-a = \"a\"\nlabel = \"b\"\nlabel-field = 1\n").is_err());
    let unknown_ext: TaskSpec = toml::from_str("train = \"x.txt\"\ntext-a = \"a\"\nlabel = \"b\"\n").unwrap();
    assert!(unknown_ext.to_task_def("t").unwrap_err().to_string().contains("format"));
}

#[test]
fn few_shot_takes_k_per_class_reproducibly() {
    let examples: Vec<Example> = (0..100).map(|i| ex(&format!("t{i}"), None, Label::Class(i % 3))).collect();
    let a = few_shot(&examples, 16, 7);
    let b = few_shot(&examples, 16, 7);
    let c = few_shot(&examples, 16, 8);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 48);
    for class in 0..3 {
        assert_eq!(a.iter().filter(|e| e.label == Label::Class(class)).count(), 16);
    }
    let mut texts: Vec<&str> = a.iter().map(|e| e.text_a.as_str()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 48, "no duplicates");
    // A class smaller than k gives all it has.
    let small: Vec<Example> = (0..5).map(|i| ex("x", None, Label::Class(usize::from(i == 0)))).collect();
    assert_eq!(few_shot(&small, 3, 1).len(), 3 + 1);
}

#[test]
fn synthetic_tasks_are_deterministic_and_consistent() {
    for name in synthetic_task_names() {
        let def = synthetic_task(name).unwrap();
        let a = generate(name, 200, 1).unwrap();
        assert_eq!(a, generate(name, 200, 1).unwrap(), "{name}");
        assert_ne!(a, generate(name, 200, 2).unwrap(), "{name}");
        let classes = def.labels().len();
        for class in 0..classes {
            let n = a.iter().filter(|e| e.label == Label::Class(class)).count();
            assert!(n > 200 / classes / 2, "{name}: class {class} has only {n}");
        }
        assert_eq!(a[0].text_b.is_some(), def.fields.text_b.is_some());
    }
    // The sentiment label follows its keyword.
    for e in generate("sentiment", 50, 3).unwrap() {
        let positive = ["good", "great", "excellent", "wonderful", "happy", "lovely", "superb", "pleasant"]
            .iter()
            .any(|w| e.text_a.split(' ').any(|t| t == *w));
        assert_eq!(e.label, Label::Class(positive as usize), "{}", e.text_a);
    }
    assert!(generate("nope", 1, 0).is_err());
}

#[test]
fn tasks_resolve_user_first_then_builtin_then_synthetic() {
    use attempt_pkg::data::{load_examples, resolve_task, SyntheticSizes, TaskOrigin};
    use std::collections::BTreeMap;
    let mut user = BTreeMap::new();
    user.insert(
        "rte".to_string(),
        toml::from_str::<TaskSpec>("train = \"t.jsonl\"\ntext-a = \"a\"\nlabel = \"l\"\nlabels = [\"x\"]\n").unwrap(),
    );
    assert_eq!(resolve_task("rte", &user).unwrap().1, TaskOrigin::User);
    assert_eq!(resolve_task("mrpc", &user).unwrap().1, TaskOrigin::Builtin);
    let (def, origin) = resolve_task("synthetic-topic", &user).unwrap();
    assert_eq!((def.name.as_str(), origin), ("topic", TaskOrigin::Synthetic));
    let err = resolve_task("nope", &user).unwrap_err().to_string();
    assert!(err.contains("[tasks.nope]") && err.contains("mnli") && err.contains("sentiment"), "{err}");
    let s =
        load_examples(&def, origin, Path::new("/nonexistent"), SyntheticSizes { train: 30, dev: 10, seed: 4 }).unwrap();
    assert_eq!((s.train.len(), s.dev.len()), (30, 10));
    assert_eq!(s.train, generate("topic", 40, 4).unwrap()[..30].to_vec());
}
