//! Load every built-in task from a GLUE/SuperGLUE data directory and print
//! split sizes and label counts: `cargo run --example load_shared_data -- ../shared/data`.

use attempt_pkg::data::{builtin_task, builtin_task_names, load_task, Label};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "../shared/data".into());
    for name in builtin_task_names() {
        let def = builtin_task(name).ok_or_else(|| anyhow::anyhow!("no task {name}"))?;
        let t = load_task(&def, std::path::Path::new(&dir))?;
        let count = |xs: &[attempt_pkg::data::Example]| {
            let mut c = vec![0usize; def.labels().len().max(1)];
            for e in xs {
                if let Label::Class(i) = e.label {
                    c[i] += 1;
                }
            }
            c
        };
        println!(
            "{name:6} train {:6} dev {:5} train-labels {:?} dev-labels {:?}",
            t.train.len(),
            t.dev.len(),
            count(&t.train),
            count(&t.dev)
        );
    }
    Ok(())
}
