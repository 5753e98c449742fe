//! `repo` and `commit` from the checkout's `.git`, read as files (no git binary).
//!
//! - The git directory is `.git` in the scan root (not above it: that is outside the tree); a `.git` *file*
//!   (`gitdir: ...`, worktrees and submodules) is followed, and a worktree's `commondir` gives the shared
//!   refs and config.
//! - `commit`: `HEAD`, following `ref: refs/heads/x` through loose refs and `packed-refs`; a detached
//!   HEAD is used as is. Only hex object ids are accepted.
//! - `repo`: the `url` of `[remote "origin"]` in `config`, normalised to `host/owner/name`:
//!   `git@github.com:acme/web.git`, `https://user:token@github.com/acme/web.git` and
//!   `ssh://git@github.com:22/acme/web` all give `github.com/acme/web`. Credentials and ports are never
//!   kept. Local paths and unparseable URLs give `None`.

use std::fs;
use std::path::{Path, PathBuf};

/// What was read from `.git`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct GitInfo {
    pub repo: Option<String>,
    pub commit: Option<String>,
}

const MAX_GIT_FILE: u64 = 4 * 1024 * 1024;

fn read_small(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_GIT_FILE {
        return None;
    }
    let bytes = fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// (git dir, common dir) of the checkout at `root`. Only `root/.git` is considered: a folder above the
/// scan root is outside the tree, and reading it would make the artifact depend on where the tree sits.
fn git_dirs(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let dot_git = root.join(".git");
    let meta = fs::symlink_metadata(&dot_git).ok()?;
    let git_dir = if meta.is_dir() {
        dot_git
    } else if meta.is_file() {
        let text = read_small(&dot_git)?;
        let target = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?.trim();
        let p = Path::new(target);
        if p.is_absolute() { p.to_path_buf() } else { root.join(p) }
    } else {
        return None;
    };
    let common = match read_small(&git_dir.join("commondir")) {
        Some(c) => {
            let p = Path::new(c.trim());
            if p.is_absolute() { p.to_path_buf() } else { git_dir.join(p) }
        }
        None => git_dir.clone(),
    };
    Some((git_dir, common))
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resolve_ref(git_dir: &Path, common: &Path, name: &str) -> Option<String> {
    if name.contains("..") || !name.starts_with("refs/") {
        return None;
    }
    for base in [git_dir, common] {
        if let Some(text) = read_small(&base.join(name)) {
            let t = text.trim();
            if is_object_id(t) {
                return Some(t.to_ascii_lowercase());
            }
            if let Some(next) = t.strip_prefix("ref:") {
                return resolve_ref(git_dir, common, next.trim()).filter(|_| next.trim() != name);
            }
        }
    }
    let packed = read_small(&common.join("packed-refs"))?;
    packed.lines().find_map(|l| {
        let (id, r) = l.split_once(' ')?;
        (r.trim() == name && is_object_id(id)).then(|| id.to_ascii_lowercase())
    })
}

fn head_commit(git_dir: &Path, common: &Path) -> Option<String> {
    let head = read_small(&git_dir.join("HEAD"))?;
    let head = head.trim();
    if is_object_id(head) {
        return Some(head.to_ascii_lowercase());
    }
    let name = head.strip_prefix("ref:")?.trim();
    resolve_ref(git_dir, common, name)
}

fn origin_url(config: &str) -> Option<String> {
    let mut in_origin = false;
    for line in config.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            let header: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            in_origin = header.eq_ignore_ascii_case("[remote\"origin\"]");
            continue;
        }
        if in_origin
            && let Some((k, v)) = t.split_once('=')
            && k.trim().eq_ignore_ascii_case("url")
        {
            return Some(v.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// `host/owner/name` from a remote URL; `None` for local paths and anything unparseable.
pub(crate) fn normalize_remote(url: &str) -> Option<String> {
    let u = url.trim();
    let (host, path) = if let Some((scheme, rest)) = u.split_once("://") {
        if !matches!(scheme.to_ascii_lowercase().as_str(), "https" | "http" | "ssh" | "git" | "git+ssh" | "ssh+git") {
            return None;
        }
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit('@').next()?;
        let host = host.split(':').next()?;
        (host, path)
    } else if let Some((authority, path)) = u.split_once(':') {
        // scp-like `git@github.com:acme/web.git`; not a Windows drive letter or a local path.
        if authority.contains('/') || authority.len() <= 1 {
            return None;
        }
        (authority.rsplit('@').next()?, path)
    } else {
        return None;
    };
    let host = host.to_ascii_lowercase();
    let valid_host = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !valid_host {
        return None;
    }
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() || path.split('/').any(|s| s.is_empty() || s == "..") {
        return None;
    }
    Some(format!("{host}/{path}"))
}

/// Reads `repo` and `commit` for the checkout at `root`.
pub(crate) fn read(root: &Path) -> GitInfo {
    let Some((git_dir, common)) = git_dirs(root) else {
        return GitInfo::default();
    };
    let commit = head_commit(&git_dir, &common);
    let repo = read_small(&common.join("config"))
        .or_else(|| read_small(&git_dir.join("config")))
        .and_then(|c| origin_url(&c))
        .and_then(|u| normalize_remote(&u));
    GitInfo { repo, commit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_remotes() {
        for url in [
            "git@github.com:acme/web.git",
            "https://github.com/acme/web.git",
            "https://x-access-token:ghs_secret@github.com/acme/web",
            "ssh://git@github.com:22/acme/web.git",
            "https://GitHub.com/acme/web/",
        ] {
            assert_eq!(normalize_remote(url).as_deref(), Some("github.com/acme/web"), "{url}");
        }
        assert_eq!(normalize_remote("/srv/git/web.git"), None);
        assert_eq!(normalize_remote("file:///srv/git/web.git"), None);
        assert_eq!(normalize_remote("C:\\repos\\web"), None);
    }

    #[test]
    fn reads_origin_from_config() {
        let c = "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = git@github.com:other/x.git\n[remote \"origin\"]\n\turl = git@gitlab.com:acme/api.git\n";
        assert_eq!(origin_url(c).as_deref(), Some("git@gitlab.com:acme/api.git"));
    }
}
