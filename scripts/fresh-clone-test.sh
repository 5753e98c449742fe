#!/usr/bin/env bash
# Proves that a clone of the repository passes its own tests with nothing beside it: clones the committed
# HEAD into a temporary folder (no ../shared next to it), checks that no source reads a path outside the
# repository, and runs the unit, sandbox and repo-extractor tests there. Needs no services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX="fresh-clone"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
have cargo || die "cargo not found"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-hardlinks "$PWD" "$work/clerk-audit"
cd "$work/clerk-audit"
[[ ! -e ../shared ]] || die "the temporary clone has a ../shared beside it"

echo "==> no source reads outside the repository"
# Every relative path with `..` in a Rust source is resolved against the file's folder (include_str!) and
# its crate's folder (CARGO_MANIFEST_DIR); one that leaves the repository both ways is refused, and so is any
# mention of the `../shared` folder the development machine has beside the repository.
python3 - <<'PY' || die "a source names a path outside the repository (above)"
import pathlib, re, sys
root = pathlib.Path.cwd().resolve()
escaping = []
for source in sorted(p for d in ("src", "tests", "crates") for p in pathlib.Path(d).rglob("*.rs")):
    if "fixtures" in source.parts or "reference" in source.parts:
        continue
    crate = next((parent for parent in source.parents if (parent / "Cargo.toml").exists()), root)
    for number, line in enumerate(source.read_text(errors="replace").splitlines(), 1):
        for literal in re.findall(r'"((?:\.\./)+[^"]*)"', line):
            bases = (source.parent, crate)
            if "../shared" in literal or all(not (base / literal).resolve().is_relative_to(root) for base in bases):
                escaping.append(f"{source}:{number}: {literal}")
print("\n".join(escaping))
sys.exit(1 if escaping else 0)
PY

# Reuse the caller's compiled dependencies: only the clone's own crates are built again.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$OLDPWD/target}"
echo "==> unit, sandbox and repo-extractor tests in a fresh clone ($PWD)"
cargo test --locked --workspace --lib
cargo test --locked -p clerk-repo-scan --test corpus
