//! Walking the checkout and reading files.
//!
//! - `ignore::WalkBuilder`, in parallel: `.gitignore` files inside the tree are honoured (also without
//!   a `.git`, so a tarball and a clone of the same tree give the same artifact); global git excludes,
//!   `.git/info/exclude`, `.ignore` files and `.gitignore` files above the scan root are not, because
//!   they are not part of the tree. Hidden files are read (`.env.production`, `.github/workflows`).
//! - No symlink is followed (neither to files nor to folders), so nothing outside the tree is read.
//! - Skipped folders: VCS metadata, dependencies, vendored code, build output and caches
//!   ([`SKIP_DIRS`]), and Python virtualenvs (a folder holding `pyvenv.cfg`).
//! - Skipped files: larger than the size cap, binary (a NUL byte in the first 8 KiB, or a known binary
//!   extension), lock files. Invalid UTF-8 is decoded lossily.

use std::path::{Component, Path};
use std::sync::Mutex;

use ignore::{DirEntry, WalkBuilder, WalkState};

use super::{FileFacts, ScanOptions, ScanStats};

/// Folder names never descended into.
pub const SKIP_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "bower_components",
    "jspm_packages",
    "vendor",
    "third_party",
    "build",
    "dist",
    "out",
    "target",
    "coverage",
    "__pycache__",
    "site-packages",
    ".venv",
    "venv",
    ".next",
    ".nuxt",
    ".output",
    ".svelte-kit",
    ".vercel",
    ".netlify",
    ".turbo",
    ".cache",
    ".parcel-cache",
    ".astro",
    ".expo",
    ".wrangler",
    ".serverless",
    ".aws-sam",
    ".angular",
    ".docusaurus",
    ".yarn",
    ".pnpm-store",
    ".gradle",
    ".terraform",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".idea",
    "Pods",
    "DerivedData",
    "storybook-static",
    ".convex",
];

const BINARY_EXTS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "ico", "bmp", "tiff", "avif", "heic", "psd", "pdf", "zip", "gz", "tgz", "bz2",
    "xz", "zst", "7z", "rar", "tar", "jar", "war", "class", "so", "dylib", "dll", "exe", "bin", "o", "a", "wasm",
    "woff", "woff2", "ttf", "otf", "eot", "mp3", "mp4", "mov", "avi", "webm", "wav", "ogg", "flac", "pyc", "pyo",
    "sqlite", "db", "node", "map", "svg",
];

const LOCK_FILES: &[&str] = &[
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "Cargo.lock",
    "go.sum",
    "poetry.lock",
    "Pipfile.lock",
    "composer.lock",
    "Gemfile.lock",
    "uv.lock",
];

fn skip_dir(entry: &DirEntry) -> bool {
    if entry.depth() == 0 {
        return false;
    }
    let Some(ft) = entry.file_type() else { return false };
    if !ft.is_dir() {
        return false;
    }
    let name = entry.file_name().to_string_lossy();
    SKIP_DIRS.contains(&name.as_ref()) || entry.path().join("pyvenv.cfg").is_file()
}

fn rel_path(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn binary_by_name(name: &str) -> bool {
    if LOCK_FILES.contains(&name) {
        return true;
    }
    let Some((_, ext)) = name.rsplit_once('.') else { return false };
    let ext = ext.to_ascii_lowercase();
    BINARY_EXTS.contains(&ext.as_str())
}

#[derive(Default)]
struct Shared {
    files: Vec<FileFacts>,
    stats: ScanStats,
}

/// Walks `root` and runs `process` on every text file.
pub(crate) fn walk(
    root: &Path,
    options: &ScanOptions,
    process: &(dyn Fn(String, &str) -> FileFacts + Sync),
) -> (Vec<FileFacts>, ScanStats) {
    let shared = Mutex::new(Shared::default());
    let max = options.max_file_size;
    walk_builder(root, options).build_parallel().run(|| {
        let shared = &shared;
        Box::new(move |entry| {
            let Ok(entry) = entry else {
                if let Ok(mut s) = shared.lock() {
                    s.stats.skipped_unreadable += 1;
                }
                return WalkState::Continue;
            };
            // Symlinks report their own type: neither files nor folders are followed through them.
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return WalkState::Continue;
            }
            let Some(rel) = rel_path(root, entry.path()) else { return WalkState::Continue };
            let mut local = ScanStats { files_seen: 1, ..ScanStats::default() };
            let result = read_file(&entry, rel, max, process, &mut local);
            if let Ok(mut s) = shared.lock() {
                s.stats.add(&local);
                if let Some(f) = result
                    && !f.is_empty()
                {
                    s.files.push(f);
                }
            }
            WalkState::Continue
        })
    });
    let shared = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    (shared.files, shared.stats)
}

/// The walk the options ask for: every file (hidden ones too), `.gitignore` only on request, no
/// symlinks followed, skipped folders pruned.
fn walk_builder(root: &Path, options: &ScanOptions) -> WalkBuilder {
    let mut builder = WalkBuilder::new(root);
    builder
        .hidden(false)
        .ignore(false)
        .git_ignore(options.respect_gitignore)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .parents(false)
        .follow_links(false)
        .max_depth(options.max_depth)
        .threads(options.threads)
        .filter_entry(|e| !skip_dir(e));
    builder
}

/// Reads one file and runs `process` on it when it is text within the size limit; otherwise counts why
/// it was skipped in `local`.
fn read_file(
    entry: &DirEntry,
    rel: String,
    max: u64,
    process: &(dyn Fn(String, &str) -> FileFacts + Sync),
    local: &mut ScanStats,
) -> Option<FileFacts> {
    let name = rel.rsplit('/').next().unwrap_or(&rel);
    if binary_by_name(name) {
        local.skipped_binary += 1;
        return None;
    }
    match entry.metadata() {
        Ok(m) if m.len() > max => {
            local.skipped_too_large += 1;
            None
        }
        Ok(_) => match std::fs::read(entry.path()) {
            Ok(bytes) if bytes.len() as u64 > max => {
                local.skipped_too_large += 1;
                None
            }
            Ok(bytes) if bytes[..bytes.len().min(8192)].contains(&0) => {
                local.skipped_binary += 1;
                None
            }
            Ok(bytes) => {
                local.files_scanned += 1;
                local.bytes_read += bytes.len() as u64;
                let text = String::from_utf8_lossy(&bytes);
                Some(process(rel, &text))
            }
            Err(_) => {
                local.skipped_unreadable += 1;
                None
            }
        },
        Err(_) => {
            local.skipped_unreadable += 1;
            None
        }
    }
}
