#!/usr/bin/env bash
# The registry's web pages in a real browser: publishes a few packages into a
# throwaway registry, serves it on 127.0.0.1, loads the pages in headless
# Chromium (Debian's package `chromium`, installed with apt-get when missing),
# and checks the DOM the browser built (--dump-dom) and a screenshot
# (PNG of the expected size, not blank).
#
#   scripts/browser_check.sh [--update-docs]   --update-docs: copy the package page's
#                                              screenshot to docs/pages-package.png
#
# Ends with a `test result:` line that scripts/test.sh adds to its total. If
# Chromium cannot be installed, it says so and counts as skipped (exit 0).
set -uo pipefail
cd "$(dirname "$0")/.."
update_docs=0
[[ "${1:-}" == "--update-docs" ]] && update_docs=1

skip() {
  echo "skipped: browser check: $1"
  echo "test result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out"
  exit 0
}

find_chromium() { command -v chromium || command -v chromium-browser || true; }
chromium=$(find_chromium)
if [[ -z "$chromium" ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing headless Chromium (Debian package chromium)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }
    chromium=$(find_chromium)
  fi
  [[ -n "$chromium" ]] || skip "chromium is not installed and could not be (apt-get install chromium needs root and the Debian archive)"
fi

bin=${ATTEMPT_BIN:-target/debug/attempt-pkg}
if [[ ! -x "$bin" ]]; then
  cargo build --locked --bin attempt-pkg >/dev/null 2>&1 || { echo "cargo build failed" >&2; exit 1; }
fi
work=$(mktemp -d)
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export ATTEMPT_HOME="$work/home"

# Authoring directories: a trained-looking prompt in three versions (one to
# be yanked), a source, a prompt set that depends on both, and a package
# whose description is markup.
python3 - "$work/src" <<'PY' || exit 1
import json, math, os, struct, sys
root = sys.argv[1]
fp = "sha256:" + "ab" * 32

def tensor(path, length, hidden, seed):
    values = [math.sin(seed + i * 0.37) * (8 + 30 * abs(math.cos(seed + i // hidden))) for i in range(length * hidden)]
    header = json.dumps({"prompt": {"dtype": "F32", "shape": [length, hidden], "data_offsets": [0, 4 * len(values)]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + struct.pack(f"<{len(values)}f", *values))

def package(name, version, task, description, extra="", length=20, seed=1.0, deps=None):
    d = os.path.join(root, f"{name}-{version}")
    os.makedirs(d)
    m = (f'[package]\nname = "{name}"\nversion = "{version}"\ntask = "{task}"\ndescription = "{description}"\n'
         f'license = "Apache-2.0"\n\n[base-model]\nname = "all-MiniLM-L6-v2"\nfingerprint = "{fp}"\nhidden-size = 16\n')
    if length:
        m += '\n[prompt]\nfile = "prompt.safetensors"\n'
        tensor(os.path.join(d, "prompt.safetensors"), length, 16, seed)
    if deps:
        m += "\n[dependencies]\n" + "".join(f'{k} = "{v}"\n' for k, v in deps.items())
    open(os.path.join(d, "Prompt.toml"), "w").write(m + extra)

package("sst2-prompt", "1.0.0", "sst2", "Sentiment (SST-2) source prompt, 20 tokens", seed=4.0)
package("qqp-prompt", "1.0.0", "qqp", "Paraphrase (QQP) source prompt, 20 tokens", seed=5.0)
for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0"]):
    package("rte-attempt", v, "rte", "RTE target prompt trained with ATTEMPT over SST-2 and QQP", seed=i + 1.0, extra=(
        '\n[provenance]\ntraining-method = "attempt"\ntraining-steps = "400"\ntraining-seed = "1"\ndataset = "rte"\n'
        'source-attention = "sst2-prompt=0.6125, qqp-prompt=0.3875"\n\n[metrics]\naccuracy = 0.6823\n'))
package("glue-set", "0.1.0", "glue", "SST-2 and QQP sources as one set", length=0, deps={"sst2-prompt": "^1.0", "qqp-prompt": "^1.0"})
package("evil-prompt", "0.1.0", "rte", "<script>document.title='pwned'</script><img src=x onerror=alert(1)>", seed=9.0)
PY
for dir in "$work"/src/sst2-prompt-* "$work"/src/qqp-prompt-* "$work"/src/rte-attempt-* "$work"/src/glue-set-* "$work"/src/evil-prompt-*; do
  "$bin" publish "$dir" --registry "$work/registry" >/dev/null || { echo "publish $dir failed" >&2; exit 1; }
done
"$bin" yank rte-attempt@1.1.0 --reason "trained on the dev split by mistake" --registry "$work/registry" >/dev/null || exit 1

ATTEMPT_LOG=error "$bin" serve --root "$work/registry" --addr 127.0.0.1:0 --download-flush-ms 100 >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do grep -q "^Serving" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^Serving .* on \(http:\/\/.*\)$/\1/p' "$work/serve.out")
[[ -n "$url" ]] || { echo "the server did not start: $(cat "$work/serve.err")" >&2; exit 1; }
cksum=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["cksum"])' "$work/registry/index/rt/e-/rte-attempt")
for _ in 1 2 3; do python3 -c 'import urllib.request,sys; urllib.request.urlopen(sys.argv[1]).read()' "$url/blobs/sha256/$cksum"; done
sleep 0.5 # the server writes download counts every 100 ms

# The flags this machine's closed network needs, and a fresh profile each run.
browse() {
  local profile
  profile=$(mktemp -d "$work/profile.XXXX")
  timeout 90 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars "$@" 2>>"$work/chromium.err"
}

passed=0 failed=0
check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1"; fi
}
has() { grep -qF -- "$2" "$1"; }
lacks() { ! grep -qiF -- "$2" "$1"; }

browse --dump-dom "$url/prompts/rte-attempt" >"$work/package.html"
browse --dump-dom "$url/" >"$work/home.html"
browse --dump-dom "$url/prompts/evil-prompt" >"$work/evil.html"
browse --dump-dom "$url/models/$(printf 'ab%.0s' $(seq 32))" >"$work/model.html"
browse --screenshot="$work/package.png" --window-size=1280,1600 "$url/prompts/rte-attempt" >/dev/null

check "package page: the name and newest version" has "$work/package.html" '<h1>rte-attempt <span class="version">1.2.0</span>'
check "package page: the add line" has "$work/package.html" 'attempt-pkg add rte-attempt@1.2.0'
check "package page: the yanked version and its reason" has "$work/package.html" 'trained on the dev split by mistake'
check "package page: 3 downloads of 1.2.0" has "$work/package.html" '3 of this version'
check "package page: the per-token norms plot (20 bars)" test "$(grep -o '<title>token [0-9]*' "$work/package.html" | wc -l)" -eq 20
check "package page: the source-attention plot" has "$work/package.html" '<title>sst2-prompt: 0.613</title>'
check "package page: its stylesheet applied (no CSP violation)" lacks "$work/chromium.err" 'Content Security Policy'
check "home page: totals" has "$work/home.html" '<strong>5</strong> packages'
check "home page: most downloaded lists rte-attempt" grep -q 'id="popular".*rte-attempt' <(tr -d '\n' <"$work/home.html")
check "model page: the model's prompts" has "$work/model.html" '>glue-set</a>'
check "markup in a description stays text: no <script> element" lacks "$work/evil.html" '<script'
check "markup in a description stays text: no <img> element" lacks "$work/evil.html" '<img'
check "markup in a description stays text: the title is untouched" lacks "$work/evil.html" '<title>pwned'
check "markup in a description stays text: shown escaped" has "$work/evil.html" '&lt;script&gt;'
# The screenshot: a PNG of the window's size whose pixels are not all one colour.
png_ok() {
  python3 - "$work/package.png" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
width, height = struct.unpack(">II", data[16:24])
assert (width, height) == (1280, 1600), f"screenshot is {width}x{height}, expected 1280x1600"
idat, pos = b"", 8
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IDAT":
        idat += data[pos + 8:pos + 8 + length]
    pos += 12 + length
raw = zlib.decompress(idat)
distinct = len(set(raw))
assert distinct > 16, f"the screenshot looks blank ({distinct} distinct byte values)"
PY
}
[[ -s "$work/package.png" ]] && check "screenshot: 1280x1600 PNG, not blank" png_ok || check "screenshot was written" false
if [[ $update_docs == 1 && -s "$work/package.png" ]]; then
  cp "$work/package.png" docs/pages-package.png && echo "wrote docs/pages-package.png"
fi
if [[ $failed -gt 0 ]]; then
  echo "--- chromium's stderr:"; tail -20 "$work/chromium.err"
fi
echo "test result: $([[ $failed == 0 ]] && echo ok || echo FAILED). $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out"
[[ $failed == 0 ]]
