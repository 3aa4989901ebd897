//! The registry's web pages (`attempt-pkg serve`, src/server/pages/): each
//! page rendered for a registry with several versions, a yanked one (with a
//! reason), a prompt set, dependents, downloads and a publisher's markup;
//! escaping, the Content-Security-Policy, `--auth-required`, and the browse
//! queries on SQLite (PostgreSQL: tests/server_postgres.rs).

mod common_registry;
mod pages_common;
mod server_common;

use std::time::{Duration, Instant};

use attempt_pkg::registry::LocalRegistry;
use common_registry::{Env, FINGERPRINT, OTHER_FINGERPRINT};
use pages_common::{EVIL_DESCRIPTION, YANK_REASON};
use server_common::{http, Server};

const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A registry directory with [`pages_common::packages`] published and
/// mnli-prompt 1.1.0 yanked with a reason through the server's API; the
/// server writes download counts every 100 ms.
fn served_registry(extra: &[&str]) -> (Env, Server) {
    let env = Env::new();
    for (prompt, extra_manifest) in pages_common::packages() {
        let dir = tempfile::tempdir().unwrap();
        pages_common::write(&prompt, &extra_manifest, dir.path());
        env.ok(&["publish", dir.path().to_str().unwrap()]);
    }
    let mut args = vec!["--download-flush-ms", "100"];
    args.extend_from_slice(extra);
    let server = Server::start_sharing(&env.registry(), &args, &[]);
    (env, server)
}

fn get(server: &Server, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = http().get(format!("{}{path}", server.url)).send().expect("GET a page");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().expect("page text"), headers)
}

fn page(server: &Server, path: &str) -> String {
    let (status, body, headers) = get(server, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    assert_eq!(headers["content-security-policy"], CSP, "GET {path}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    body
}

/// The text between `<section id="ID"` and the next `</section>`.
fn section<'a>(body: &'a str, id: &str) -> &'a str {
    let start = body.find(&format!("<section id=\"{id}\"")).unwrap_or_else(|| panic!("no section {id} in:\n{body}"));
    let end = body[start..].find("</section>").map_or(body.len(), |e| start + e);
    &body[start..end]
}

fn cksum_of(env: &Env, name: &str, version: &str) -> String {
    env.index_entries(name)
        .into_iter()
        .find(|e| e.vers.to_string() == version)
        .expect("indexed version")
        .cksum
        .hex()
        .to_string()
}

#[test]
fn package_page_shows_versions_yanks_facts_plots_and_the_add_line() {
    let (env, server) = served_registry(&[]);
    let token = server.token("alice", &[]);
    env.ok(&[
        "yank",
        "mnli-prompt@1.1.0",
        "--reason",
        YANK_REASON,
        "--registry",
        &server.index_url(),
        "--token",
        &token,
    ]);

    let body = page(&server, "/prompts/mnli-prompt");
    assert!(
        body.contains("<pre class=\"copy\" id=\"add-line\"><code>attempt-pkg add mnli-prompt@1.2.0</code></pre>"),
        "{body}"
    );
    assert!(body.contains("<p class=\"description\">Natural language inference prompt</p>"), "{body}");
    let facts = section(&body, "facts");
    for expected in [
        "tiny-test-model",
        FINGERPRINT.trim_start_matches("sha256:"),
        "<dt>hidden size</dt><dd>8</dd>",
        "<dt>prompt length</dt><dd>6 tokens</dd>",
        "<dt>dtype</dt><dd>F32</dd>",
        "<dt>license</dt><dd>Apache-2.0</dd>",
        "<dt>task</dt><dd>mnli</dd>",
        &cksum_of(&env, "mnli-prompt", "1.2.0"),
        "UTC",
        "<dt>owners</dt><dd>none recorded</dd>",
    ] {
        assert!(facts.contains(expected), "facts lack {expected:?}:\n{facts}");
    }
    assert!(facts.contains(&format!("href=\"/models/{}\"", FINGERPRINT.trim_start_matches("sha256:"))));
    // A package published over HTTP has its publisher as owner.
    let owned = common_registry::Prompt::new("owned-prompt", "1.0.0").write();
    env.ok(&["publish", owned.path().to_str().unwrap(), "--registry", &server.index_url(), "--token", &token]);
    assert!(section(&page(&server, "/prompts/owned-prompt"), "facts").contains("<dt>owners</dt><dd>alice</dd>"));
    // Every version, newest first, the yanked one marked with its reason.
    let versions = section(&body, "versions");
    let (i12, i11, i10) =
        (versions.find(">1.2.0<").unwrap(), versions.find(">1.1.0<").unwrap(), versions.find(">1.0.0<").unwrap());
    assert!(i12 < i11 && i11 < i10, "{versions}");
    assert_eq!(versions.matches("class=\"yanked\"").count(), 1, "{versions}");
    assert!(versions.contains(YANK_REASON), "{versions}");
    // Dependents, metrics, provenance, and the two plots.
    assert!(section(&body, "relations")
        .contains("<a href=\"/prompts/mix-set\">mix-set</a> <span class=\"version\">0.1.0</span>"));
    assert!(section(&body, "metrics").contains("<th>accuracy</th><td class=\"num\">0.8125</td>"), "{body}");
    let provenance = section(&body, "provenance");
    assert!(provenance.contains("<th>training-method</th><td>attempt</td>"), "{provenance}");
    let norms = section(&body, "norms");
    assert_eq!(norms.matches("<title>token ").count(), 6, "one bar per token:\n{norms}");
    let attention = section(&body, "attention");
    assert!(attention.contains(">sst2-prompt</text>") && attention.contains(">qqp-prompt</text>"), "{attention}");
    assert!(attention.contains("<title>sst2-prompt: 0.625</title>"), "{attention}");

    // The yanked version's own page says so, with the reason.
    let yanked = page(&server, "/prompts/mnli-prompt/1.1.0");
    assert!(yanked.contains(&format!("This version is yanked: <q class=\"reason\">{YANK_REASON}</q>")), "{yanked}");
    assert!(yanked.contains("attempt-pkg add mnli-prompt@1.1.0"));
    assert!(yanked.contains("Not the newest version"));
    assert!(!yanked.contains("id=\"attention\""), "1.1.0 has no ATTEMPT provenance");

    // A prompt set: no tensor facts, no norms; its dependencies link.
    let set = page(&server, "/prompts/mix-set");
    assert!(set.contains("a prompt set (dependencies only, no tensor)"));
    assert!(!set.contains("id=\"norms\""));
    let relations = section(&set, "relations");
    assert!(relations.contains("<a href=\"/prompts/mnli-prompt\">mnli-prompt</a> <code>^1.0</code>"), "{relations}");
    assert!(relations.contains("No package depends on mix-set."));

    // Errors are pages too, with the same headers.
    let (status, missing, headers) = get(&server, "/prompts/no-such-prompt");
    assert_eq!(status, 404);
    assert!(missing.contains("no package named `no-such-prompt`"), "{missing}");
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(get(&server, "/prompts/mnli-prompt/not-semver").0, 400);
    assert_eq!(get(&server, "/prompts/mnli-prompt/9.9.9").0, 404);
    assert_eq!(get(&server, "/prompts/..%2Fregistry.db").0, 400);
}

#[test]
fn home_and_model_pages_list_search_and_filter() {
    let (_env, server) = served_registry(&[]);
    let home = page(&server, "/");
    assert!(
        home.contains("<strong>4</strong> packages · <strong>6</strong> versions · <strong>0</strong> downloads"),
        "{home}"
    );
    let newest = section(&home, "newest");
    for name in ["mnli-prompt", "sst2-prompt", "mix-set", "evil-prompt"] {
        assert!(newest.contains(&format!("<a href=\"/prompts/{name}\">{name}</a>")), "newest lacks {name}:\n{newest}");
    }
    assert!(newest.find("evil-prompt").unwrap() < newest.find("sst2-prompt").unwrap(), "newest first:\n{newest}");
    assert!(section(&home, "popular").contains("No downloads yet."));
    assert!(home.contains("<option value=\"sst2\">sst2</option>"), "task filter:\n{home}");
    let other = OTHER_FINGERPRINT.trim_start_matches("sha256:");
    assert!(
        home.contains(&format!("<option value=\"{other}\">tiny-test-model (222222222222…, 1 packages)</option>")),
        "{home}"
    );

    // Search is the API's full-text search; filters narrow it or the listing.
    let hits = section(&page(&server, "/?q=inference"), "results").to_string();
    assert!(hits.contains("mnli-prompt") && !hits.contains("sst2-prompt"), "{hits}");
    let by_task = page(&server, "/?task=sst2");
    let results = section(&by_task, "results");
    assert!(results.contains("sst2-prompt") && !results.contains("mnli-prompt"), "{results}");
    assert!(by_task.contains("<option value=\"sst2\" selected>sst2</option>"));
    let by_model = page(&server, &format!("/?model={other}&q=prompt"));
    let results = section(&by_model, "results");
    assert!(results.contains("sst2-prompt") && !results.contains("mnli-prompt"), "{results}");
    assert!(section(&page(&server, "/?q=zzzz"), "results").contains("No package matches."));
    assert!(page(&server, "/?q=%3C%3E").contains("has no words to search for"));
    assert_eq!(get(&server, "/?model=not-a-fingerprint").0, 400);

    // All prompts for one frozen model, and no others.
    let fp = FINGERPRINT.trim_start_matches("sha256:");
    let model = page(&server, &format!("/models/{fp}"));
    let listed = section(&model, "packages");
    for name in ["mnli-prompt", "mix-set", "evil-prompt"] {
        assert!(listed.contains(&format!(">{name}</a>")), "{listed}");
    }
    assert!(!listed.contains("sst2-prompt"), "{listed}");
    assert!(model.contains("<h1>tiny-test-model</h1>"));
    assert!(model.contains(&format!("attempt-pkg init --model-path DIR --model-fingerprint sha256:{fp}")));
    assert_eq!(page(&server, &format!("/models/sha256:{fp}")), model);
    assert_eq!(get(&server, &format!("/models/{}", "3".repeat(64))).0, 404);
    assert_eq!(get(&server, "/models/xyz").0, 400);

    // The stylesheet is the one asset, served locally.
    let css = http().get(format!("{}/static/pages.css", server.url)).send().unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    for body in [&home, &model] {
        assert!(!body.contains("http://") && !body.contains("https://"), "a page refers to something external");
        assert!(!body.contains("<script"), "a page has a script");
    }
}

#[test]
fn publisher_markup_renders_as_text() {
    let (_env, server) = served_registry(&[]);
    for path in
        ["/prompts/evil-prompt", "/", "/?q=pwned", &format!("/models/{}", FINGERPRINT.trim_start_matches("sha256:"))]
    {
        let body = page(&server, path);
        assert!(!body.contains("<script"), "GET {path} has a <script>:\n{body}");
        assert!(!body.contains("<img"), "GET {path} has an <img>:\n{body}");
        assert!(!body.contains("<b "), "GET {path} has the provenance's <b>");
        assert!(!body.contains("<i>"), "GET {path} has the metric's <i>");
    }
    let body = page(&server, "/prompts/evil-prompt");
    assert!(
        body.contains("&#60;script&#62;alert(&#39;pwned&#39;)&#60;/script&#62;") || body.contains("&lt;script&gt;"),
        "{body}"
    );
    assert!(body.contains("onerror=alert(1)"), "the text is kept, as text");
    assert!(body.contains("&amp; friends") || body.contains("&#38; friends"), "{body}");
    assert!(section(&body, "provenance").contains("bold"), "{body}");
    assert!(EVIL_DESCRIPTION.contains("<script>"));
}

#[test]
fn blob_downloads_are_counted_in_batches() {
    let (env, server) = served_registry(&[]);
    let cksum = cksum_of(&env, "mnli-prompt", "1.2.0");
    let url = format!("{}/blobs/sha256/{cksum}", server.url);
    for _ in 0..3 {
        assert!(!http().get(&url).send().unwrap().bytes().unwrap().is_empty());
    }
    // Neither a HEAD nor the rest of a resumed download is another download.
    assert_eq!(http().head(&url).send().unwrap().status(), 200);
    assert_eq!(http().get(&url).header("Range", "bytes=10-").send().unwrap().status(), 206);
    assert_eq!(http().get(&url).header("Range", "bytes=0-9").send().unwrap().status(), 206);
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let body = page(&server, "/prompts/mnli-prompt");
        if body.contains("4 of this version") || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("<dd>4 of this version, 4 of all versions</dd>"), "{}", section(&body, "facts"));
    let home = page(&server, "/");
    assert!(home.contains("<strong>4</strong> downloads"), "{home}");
    let popular = section(&home, "popular");
    assert!(popular.contains("mnli-prompt") && popular.contains("<td class=\"num\">4</td>"), "{popular}");
}

#[test]
fn a_write_through_the_server_shows_on_the_next_view_of_a_cached_page() {
    let (env, server) = served_registry(&[]);
    let token = server.token("alice", &[]);
    let before = page(&server, "/prompts/mnli-prompt");
    assert_eq!(page(&server, "/prompts/mnli-prompt"), before, "a second view within the cache's time is the same page");
    assert!(!before.contains("This version is yanked"), "{before}");
    // A yank through the API: the cached page is stale at once, not after its time.
    let registry = server.index_url();
    env.ok(&["yank", "mnli-prompt@1.2.0", "--registry", &registry, "--token", &token]);
    let after = page(&server, "/prompts/mnli-prompt/1.2.0");
    assert!(after.contains("This version is yanked"), "{after}");
    env.ok(&["yank", "--undo", "mnli-prompt@1.2.0", "--registry", &registry, "--token", &token]);
    assert!(!page(&server, "/prompts/mnli-prompt/1.2.0").contains("This version is yanked"));
    // An error is never cached: a package published after a 404 is found,
    // and the home page's totals count it.
    assert!(page(&server, "/").contains("<strong>4</strong> packages"));
    assert_eq!(get(&server, "/prompts/late-prompt").0, 404);
    let dir = tempfile::tempdir().unwrap();
    let (mut prompt, manifest) = pages_common::packages().remove(0);
    prompt.name = "late-prompt".into();
    pages_common::write(&prompt, &manifest, dir.path());
    env.ok(&["publish", dir.path().to_str().unwrap(), "--registry", &registry, "--token", &token]);
    assert!(page(&server, "/prompts/late-prompt").contains("attempt-pkg add late-prompt@1.0.0"));
    assert!(page(&server, "/").contains("<strong>5</strong> packages"));
}

#[test]
fn a_cached_page_of_a_private_registry_still_needs_a_token() {
    let (_env, server) = served_registry(&["--auth-required"]);
    let token = server.token("reader", &[]);
    for path in ["/", "/prompts/mnli-prompt"] {
        let url = format!("{}{path}", server.url);
        assert_eq!(http().get(&url).bearer_auth(&token).send().unwrap().status(), 200, "GET {path} with a token");
        let (status, body, _) = get(&server, path);
        assert_eq!(status, 401, "GET {path} without a token after it was rendered: {body}");
        assert!(!body.contains("mnli-prompt</a>"), "{body}");
    }
}

#[test]
fn auth_required_protects_the_pages_like_the_index() {
    let (_env, server) = served_registry(&["--auth-required"]);
    let token = server.token("reader", &[]);
    for path in ["/", "/prompts/mnli-prompt", &format!("/models/{}", FINGERPRINT.trim_start_matches("sha256:"))] {
        let (status, body, headers) = get(&server, path);
        assert_eq!(status, 401, "GET {path}");
        assert!(body.contains("requires authentication"), "{body}");
        assert!(!body.contains("mnli-prompt</a>"), "{body}");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"attempt-pkg\"");
        let response = http().get(format!("{}{path}", server.url)).bearer_auth(&token).send().unwrap();
        assert_eq!(response.status(), 200, "GET {path} with a token");
        assert_eq!(response.headers()["cache-control"], "private, no-cache");
        // HEAD answers as GET does: no token, no page (not even whether it exists).
        assert_eq!(http().head(format!("{}{path}", server.url)).send().unwrap().status(), 401, "HEAD {path}");
        let head = http().head(format!("{}{path}", server.url)).bearer_auth(&token).send().unwrap();
        assert_eq!(head.status(), 200, "HEAD {path} with a token");
    }
    let missing = http().head(format!("{}/prompts/no-such-prompt", server.url)).send().unwrap();
    assert_eq!(missing.status(), 401, "a HEAD without a token does not tell which packages exist");
}

#[test]
fn browse_queries_on_sqlite() {
    let root = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let registry = LocalRegistry::open(root.path()).await.unwrap();
        pages_common::check_browse_queries(&registry).await;
    });
}
