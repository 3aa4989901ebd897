//! Concurrent publishes from several processes, and crash safety: a publish
//! killed at any point leaves a registry that opens consistent.

mod common_registry;

use std::process::{Command, Stdio};

use common_registry::{Env, Prompt};

fn spawn_publish(env: &Env, dir: &std::path::Path, crash_at: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attempt-pkg"));
    cmd.env("ATTEMPT_HOME", env.home.path())
        .env_remove("ATTEMPT_REGISTRY")
        .args(["publish", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match crash_at {
        Some(point) => cmd.env("ATTEMPT_TEST_CRASH_AT", point),
        None => cmd.env_remove("ATTEMPT_TEST_CRASH_AT"),
    };
    cmd.spawn().expect("spawn attempt-pkg")
}

/// The index as a client sees it must equal what the database reports.
fn assert_index_matches_db(env: &Env, name: &str) {
    let info = env.json(&["info", name]);
    let db: Vec<(String, String, bool)> = info["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (v["version"].as_str().unwrap().into(), v["cksum"].as_str().unwrap().into(), v["yanked"].as_bool().unwrap())
        })
        .collect();
    let index: Vec<(String, String, bool)> =
        env.index_entries(name).iter().map(|e| (e.vers.to_string(), e.cksum.hex().to_string(), e.yanked)).collect();
    assert_eq!(index, db, "index of {name} differs from the database");
    for (_, cksum, _) in &db {
        let blob = env.registry().join("blobs/sha256").join(&cksum[..2]).join(cksum);
        assert!(blob.is_file(), "blob {cksum} of {name} is missing");
    }
}

#[test]
fn concurrent_publishes_of_one_version_have_one_winner() {
    let env = Env::new();
    // Different contents under the same name@version, so the winner is identifiable.
    let dirs: Vec<_> = (0..6)
        .map(|i| {
            let mut p = Prompt::new("race-prompt", "1.0.0");
            p.seed = i as f32;
            p.write()
        })
        .collect();
    let children: Vec<_> = dirs.iter().map(|d| spawn_publish(&env, d.path(), None)).collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let winners: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one publish must win: {outputs:#?}");
    for loser in outputs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(err.contains("already published"), "{err}");
    }
    let stdout = String::from_utf8_lossy(&winners[0].stdout);
    let cksum = stdout.trim().rsplit("sha256:").next().unwrap().trim_end_matches(')');
    let entries = env.index_entries("race-prompt");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].cksum.hex(), cksum);
    assert_index_matches_db(&env, "race-prompt");
}

#[test]
fn concurrent_publishes_of_different_packages_all_land() {
    let env = Env::new();
    let dirs: Vec<_> = (0..6).map(|i| Prompt::new(&format!("pkg-{i}"), "1.0.0").write()).collect();
    let children: Vec<_> = dirs.iter().map(|d| spawn_publish(&env, d.path(), None)).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 6);
    for i in 0..6 {
        assert_index_matches_db(&env, &format!("pkg-{i}"));
    }
}

#[test]
fn a_publish_killed_at_any_point_leaves_a_consistent_registry() {
    for (point, published) in [("after-blob", false), ("after-db", true), ("after-index", true)] {
        let env = Env::new();
        let first = Prompt::new("crash-prompt", "1.0.0");
        env.ok(&["publish", first.write().path().to_str().unwrap()]);

        let mut second = first.clone();
        second.version = "1.1.0".into();
        second.seed = 5.0;
        let dir = second.write();
        let out = spawn_publish(&env, dir.path(), Some(point)).wait_with_output().unwrap();
        assert!(!out.status.success(), "{point}: the process should have aborted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("aborting"));

        // Killed between the DB commit and the index write: the index lags
        // until the next open repairs it.
        let raw = env.index_entries("crash-prompt").len();
        if point == "after-db" {
            assert_eq!(raw, 1, "after-db: the index was not yet rewritten");
        }

        // Any command opens the registry, which repairs it.
        let versions: Vec<String> = env.json(&["info", "crash-prompt"])["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_string())
            .collect();
        let expected: &[&str] = if published { &["1.0.0", "1.1.0"] } else { &["1.0.0"] };
        assert_eq!(versions, expected, "{point}");
        assert_index_matches_db(&env, "crash-prompt");
        assert!(
            std::fs::read_dir(env.registry().join("tmp")).unwrap().next().is_none(),
            "{point}: temp files must be cleaned"
        );

        // The registry keeps working: the lost publish can be retried.
        let retry = env.run(&["publish", dir.path().to_str().unwrap()]);
        if published {
            assert!(String::from_utf8_lossy(&retry.stderr).contains("already published"), "{point}");
        } else {
            assert!(retry.status.success(), "{point}: {}", String::from_utf8_lossy(&retry.stderr));
        }
        assert_index_matches_db(&env, "crash-prompt");
    }
}

#[test]
fn real_kill_during_publish_storm_leaves_a_consistent_registry() {
    // SIGKILL publishes at staggered moments; whatever landed must be complete.
    let env = Env::new();
    env.ok(&["publish", Prompt::new("seed-prompt", "1.0.0").write().path().to_str().unwrap()]);
    let dirs: Vec<_> = (0..8)
        .map(|i| {
            let mut p = Prompt::new("storm-prompt", &format!("1.0.{i}"));
            p.seed = i as f32;
            p.write()
        })
        .collect();
    for (i, d) in dirs.iter().enumerate() {
        let mut child = spawn_publish(&env, d.path(), None);
        std::thread::sleep(std::time::Duration::from_millis(3 * i as u64));
        let _ = child.kill();
        let _ = child.wait();
    }
    let landed = env.json(&["info", "seed-prompt"]);
    assert_eq!(landed["versions"].as_array().unwrap().len(), 1);
    if env.json(&["list"]).as_array().unwrap().len() == 2 {
        assert_index_matches_db(&env, "storm-prompt");
    } else {
        assert!(env.index_entries("storm-prompt").is_empty());
    }
    assert_index_matches_db(&env, "seed-prompt");
}

#[test]
fn a_deleted_or_corrupted_index_is_regenerated_from_the_database() {
    let env = Env::new();
    env.ok(&["publish", Prompt::new("regen-prompt", "1.0.0").write().path().to_str().unwrap()]);
    env.ok(&["yank", "regen-prompt@1.0.0"]);
    let good = env.index_text("regen-prompt").unwrap();
    std::fs::remove_dir_all(env.registry().join("index")).unwrap();
    // A stray file for a package the database does not know.
    let stray = env.registry().join("index/gh/os/ghost-prompt");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, "{}\n").unwrap();

    env.ok(&["list"]);
    assert_eq!(env.index_text("regen-prompt").unwrap(), good);
    assert!(!stray.exists(), "files of unknown packages are removed");
    assert!(env.registry().join("index/config.json").is_file());

    // The library API regenerates on request too.
    std::fs::write(env.registry().join("index/re/ge/regen-prompt"), "garbage\n").unwrap();
    let registry = attempt_pkg::registry::BlockingRegistry::open(&env.registry()).unwrap();
    assert_eq!(registry.check_index().unwrap().len(), 1);
    registry.rebuild_index().unwrap();
    assert!(registry.check_index().unwrap().is_empty());
    assert_eq!(env.index_text("regen-prompt").unwrap(), good);
}
