//! fetch, verify, the shared cache, --offline and cache gc.

mod common;

use std::fs;

use common::{Env, Registry, Version};

fn project_with_two(env: &Env) -> (registry_index::Checksum, registry_index::Checksum) {
    let a = env.registry.publish(Version::new("mnli", "1.0.0"));
    let b = env.registry.publish(Version::new("sst2", "1.0.0"));
    env.init();
    env.ok(&["add", "mnli", "sst2"]);
    (a, b)
}

#[test]
fn fetch_then_verify() {
    let env = Env::new();
    let (a, b) = project_with_two(&env);
    let out = env.cmd(&["verify"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not cached: mnli@1.0.0"));
    env.ok(&["fetch"]);
    assert_eq!(fs::read(env.cached_blob(&a)).unwrap(), Registry::blob_bytes("mnli", "1.0.0"));
    assert!(env.cached_blob(&b).is_file());
    let out = env.cmd(&["fetch"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 downloaded, 2 already cached"));
    let out = env.cmd(&["verify"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Verified 2 cached package(s)"));
    // No partial downloads are left behind.
    let tmp = env.home.join("cache/tmp");
    assert_eq!(fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn tampered_cached_blob_is_deleted_and_named() {
    let env = Env::new();
    let (a, _) = project_with_two(&env);
    env.ok(&["fetch"]);
    fs::write(env.cached_blob(&a), b"evil bytes").unwrap();
    let err = env.fails(&["verify"]);
    assert!(err.contains("mnli@1.0.0") && err.contains("deleted"), "{err}");
    assert!(!env.cached_blob(&a).exists());

    env.ok(&["fetch"]);
    fs::write(env.cached_blob(&a), b"evil again").unwrap();
    let err = env.fails(&["fetch"]);
    assert!(err.contains("mnli@1.0.0") && err.contains("corrupt") && err.contains("deleted"), "{err}");
    assert!(!env.cached_blob(&a).exists());
    env.ok(&["fetch"]);
    assert!(env.cached_blob(&a).is_file());
}

#[test]
fn corrupt_registry_blob_never_enters_the_cache() {
    let env = Env::new();
    let (a, _) = project_with_two(&env);
    fs::write(env.registry.blob_file(&a), b"bit rot").unwrap();
    let err = env.fails(&["fetch"]);
    assert!(err.contains("mnli@1.0.0") && err.contains("registry+file://"), "{err}");
    assert!(err.contains(&a.prefixed()), "{err}");
    assert!(!env.cached_blob(&a).exists());
    assert_eq!(fs::read_dir(env.home.join("cache/tmp")).unwrap().count(), 0, "temp file left behind");
}

#[test]
fn lock_checksum_is_checked_against_the_index() {
    let env = Env::new();
    let (a, _) = project_with_two(&env);
    env.ok(&["fetch"]);
    let forged = env.lock().replace(&a.prefixed(), &format!("sha256:{}", "0".repeat(64)));
    fs::write(env.lock_path(), forged).unwrap();
    let err = env.fails(&["verify"]);
    assert!(err.contains("mnli@1.0.0") && err.contains("registry"), "{err}");
}

#[test]
fn verify_checks_each_package_against_the_registry_its_lock_names() {
    let env = Env::new();
    let (_, b) = project_with_two(&env);
    env.ok(&["fetch"]);
    // Under another --registry, the registry the lock came from is opened and read.
    let out = env.cmd(&["--registry", "no-such-registry", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Verified 2 cached package(s)"));
    // So a forged checksum is caught there too: the lock's registry was read.
    let good = env.lock();
    fs::write(env.lock_path(), good.replace(&b.prefixed(), &format!("sha256:{}", "0".repeat(64)))).unwrap();
    let err = env.fails(&["--registry", "no-such-registry", "verify"]);
    assert!(err.contains("sst2@1.0.0: the lock says sha256:000") && err.contains("lists"), "{err}");
    assert!(!env.project.join("no-such-registry").exists(), "verify created a registry");
}

#[test]
fn verify_fails_when_the_lock_cannot_be_checked_against_its_index_but_checks_the_cache() {
    let env = Env::new();
    let (a, _) = project_with_two(&env);
    env.ok(&["fetch"]);
    fs::write(env.cached_blob(&a), b"evil bytes").unwrap();
    // The registry the lock came from is gone: nothing to check the checksums against.
    let moved = env.registry.root.with_extension("moved");
    fs::rename(&env.registry.root, &moved).unwrap();
    let err = env.fails(&["verify"]);
    assert!(err.contains("mnli@1.0.0") && err.contains("deleted"), "the cache was still checked: {err}");
    assert!(
        err.contains("sst2@1.0.0: could not read the index of registry+file://")
            && err.contains("not checked against it"),
        "{err}"
    );
    assert!(err.contains("3 problem(s)"), "{err}");
    // --offline asks for no index check: the blobs alone decide.
    fs::rename(&moved, &env.registry.root).unwrap();
    env.ok(&["fetch"]);
    fs::rename(&env.registry.root, &moved).unwrap();
    env.ok(&["verify", "--offline"]);
    fs::rename(&moved, &env.registry.root).unwrap();
    // A config.toml that does not parse: the cache is checked, the index cannot be.
    fs::write(env.home.join("config.toml"), "[registries\nbroken").unwrap();
    let err = env.fails(&["verify"]);
    assert!(err.contains("not checked against the registry index") && err.contains("1 problem(s)"), "{err}");
}

#[test]
fn offline_uses_only_lock_and_cache() {
    let env = Env::new();
    let (a, _) = project_with_two(&env);
    let err = env.fails(&["fetch", "--offline"]);
    assert!(err.contains("not in the cache") && err.contains("--offline"), "{err}");
    env.ok(&["fetch"]);
    // The registry disappears: everything that needs only the lock and the cache still works.
    fs::remove_dir_all(&env.registry.root).unwrap();
    env.ok(&["fetch", "--offline"]);
    env.ok(&["tree", "--frozen"]);
    env.ok(&["verify", "--offline"]);
    env.ok(&["remove", "--offline", "sst2"]);
    assert_eq!(env.locked_version("sst2"), None);
    let err = env.fails(&["add", "--offline", "qqp@1"]);
    assert!(err.contains("--offline") && err.contains("qqp is not locked"), "{err}");
    let err = env.fails(&["lock"]);
    assert!(err.contains("is not a registry"), "{err}");
    let _ = a;
}

#[test]
fn offline_without_a_lock_fails_clearly() {
    let env = Env::new();
    env.registry.publish(Version::new("mnli", "1.0.0"));
    env.init();
    let err = env.fails(&["add", "--offline", "mnli@1"]);
    assert!(err.contains("--offline") && err.contains("no attempt.lock"), "{err}");
}

#[test]
fn gc_keeps_what_locks_name() {
    let env = Env::new();
    let (a, b) = project_with_two(&env);
    env.ok(&["fetch"]);
    env.ok(&["remove", "sst2"]);
    // A stale partial download and an unreferenced blob.
    let tmp = env.home.join("cache/tmp");
    fs::create_dir_all(&tmp).unwrap();
    let partial = tmp.join("download-stale");
    fs::write(&partial, b"half").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    fs::File::options().write(true).open(&partial).unwrap().set_modified(old).unwrap();
    // Cached `suggest` features: an old file goes with the default 30 days, a fresh one stays.
    let features = env.home.join("cache/features/abc");
    fs::create_dir_all(&features).unwrap();
    let (stale, fresh) = (features.join("stale.safetensors"), features.join("fresh.safetensors"));
    fs::write(&stale, b"x").unwrap();
    fs::write(&fresh, b"x").unwrap();
    let month = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 24 * 3600);
    fs::File::options().write(true).open(&stale).unwrap().set_modified(month).unwrap();
    // Recently used: kept by the default 30 days.
    let out = env.cmd(&["cache", "gc"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 cached feature file(s)"), "{out:?}");
    assert!(env.cached_blob(&b).exists());
    assert!(!partial.exists());
    assert!(!stale.exists() && fresh.exists());
    env.ok(&["cache", "gc", "--older-than", "0", "--dry-run"]);
    assert!(env.cached_blob(&b).exists());
    env.ok(&["cache", "gc", "--older-than", "0"]);
    assert!(env.cached_blob(&a).exists(), "named by the project's lock");
    assert!(!env.cached_blob(&b).exists());
    // An explicit --lock list replaces the default.
    let elsewhere = env.tmp.path().join("other.lock");
    fs::write(&elsewhere, "version = 1\n").unwrap();
    env.ok(&["cache", "gc", "--older-than", "0", "--lock", elsewhere.to_str().unwrap()]);
    assert!(!env.cached_blob(&a).exists());
}

/// Writes `path` (and its directories) with a modification time `age` ago.
fn write_aged(path: &std::path::Path, age: std::time::Duration) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"bytes").unwrap();
    let when = std::time::SystemTime::now() - age;
    fs::File::options().write(true).open(path).unwrap().set_modified(when).unwrap();
}

#[test]
fn gc_cleans_resumable_downloads_and_index_copies() {
    use std::time::Duration;
    let env = Env::new();
    let (hour, days_40) = (Duration::from_secs(2 * 3600), Duration::from_secs(40 * 24 * 3600));
    // Resumable `.part` downloads of an HTTP registry: a stale one goes; a
    // young one and a stale one a download holds locked now stay.
    let partial = env.home.join("cache/partial");
    let (stale, young, busy) = (partial.join("aa.part"), partial.join("bb.part"), partial.join("cc.part"));
    write_aged(&stale, hour);
    write_aged(&young, Duration::ZERO);
    write_aged(&busy, days_40);
    let held = fs::File::options().read(true).write(true).open(&busy).unwrap();
    held.lock().unwrap();
    // Index copies of a remote registry: by --older-than (default 30 days),
    // except an interrupted atomic write, which goes after an hour.
    let index = env.home.join("cache/index/example.org-443-0123456789abcdef");
    let (old_config, fresh_file, fresh_etag) =
        (index.join("config.json"), index.join("mn/li/mnli"), index.join("mn/li/mnli.etag"));
    let (stale_tmp, young_tmp) = (index.join("mn/li/.tmp-stale"), index.join("mn/li/.tmp-young"));
    write_aged(&old_config, days_40);
    write_aged(&fresh_file, Duration::ZERO);
    write_aged(&fresh_etag, Duration::ZERO);
    write_aged(&stale_tmp, hour);
    write_aged(&young_tmp, Duration::ZERO);

    let out = env.cmd(&["cache", "gc", "--dry-run"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Would remove 0 blob(s), 1 partial download(s), 2 index file(s)"), "{said}");
    assert!(stale.exists() && old_config.exists() && stale_tmp.exists(), "a dry run removes nothing");

    let out = env.cmd(&["cache", "gc"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Removed 0 blob(s), 1 partial download(s), 2 index file(s)"), "{said}");
    assert!(!stale.exists() && young.exists() && busy.exists());
    assert!(!old_config.exists() && !stale_tmp.exists());
    assert!(fresh_file.exists() && fresh_etag.exists() && young_tmp.exists());

    // Once the download lets go, the stale file is collected; --older-than 0
    // takes every index copy but never a write that may still be running.
    drop(held);
    env.ok(&["cache", "gc", "--older-than", "0"]);
    assert!(!busy.exists() && young.exists());
    assert!(!fresh_file.exists() && !fresh_etag.exists() && young_tmp.exists());
}
