//! File-system routing conventions, from a path relative to the project root (the folder of the nearest
//! `package.json`; when the convention's folder is not at the project root, its first occurrence in the
//! path is used).
//!
//! | framework | file | route |
//! |---|---|---|
//! | Next.js app router | `[src/]app/api/webhooks/clerk/route.ts` | `/api/webhooks/clerk` (route groups `(x)` and slots `@x` dropped, `_private` folders unroutable) |
//! | Next.js pages router | `[src/]pages/api/webhooks/clerk.ts` | `/api/webhooks/clerk` (`index` dropped) |
//! | Remix / React Router | `app/routes/api.webhooks.clerk.ts`, `app/routes/api.webhooks.clerk/route.ts` | `/api/webhooks/clerk` (flat routes: `.` separates segments, `_index`, `_layout` and trailing `_` dropped, `$id` -> `:id`, `$` -> `*`, `[.]` escapes) |
//! | SvelteKit | `src/routes/api/webhooks/clerk/+server.ts` | `/api/webhooks/clerk` (groups `(x)` dropped) |
//! | Astro | `src/pages/api/webhooks/clerk.ts` | `/api/webhooks/clerk` |
//! | Nuxt | `server/api/webhooks/clerk.post.ts`, `server/routes/x.ts` | `/api/webhooks/clerk`, `/x` (method suffix and `index` dropped) |
//!
//! Dynamic segments are written `:name` and catch-alls `*name` whatever the framework's own notation.

use super::webhooks::FsKind;

/// `[id]` -> `:id`, `[...slug]` / `[[...slug]]` -> `*slug`, `[[id]]` -> `:id`, `[id=matcher]` -> `:id`.
fn bracket_segment(seg: &str) -> String {
    if seg.starts_with('[') && seg.ends_with(']') {
        let inner = seg.trim_start_matches('[').trim_end_matches(']');
        let inner = inner.split('=').next().unwrap_or(inner);
        if let Some(rest) = inner.strip_prefix("...") {
            return format!("*{rest}");
        }
        return format!(":{inner}");
    }
    seg.to_owned()
}

fn strip_ext(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// Index just after the convention's anchor folders (`app`, `src/routes`...), at the start of `segs`
/// (optionally after `src`) or else at their first occurrence.
fn after_anchor(segs: &[&str], anchor: &[&str], allow_src: bool) -> Option<usize> {
    let matches_at = |i: usize| segs.len() > i + anchor.len() && segs[i..i + anchor.len()] == *anchor;
    if matches_at(0) {
        return Some(anchor.len());
    }
    if allow_src && segs.first() == Some(&"src") && matches_at(1) {
        return Some(1 + anchor.len());
    }
    (0..segs.len()).find(|&i| matches_at(i)).map(|i| i + anchor.len())
}

fn join(segs: impl IntoIterator<Item = String>) -> String {
    let parts: Vec<String> = segs.into_iter().filter(|s| !s.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// The route a file-system routed module serves; `None` when it is not routable or unknown.
pub(crate) fn fs_route(kind: FsKind, rel: &str) -> Option<String> {
    let segs: Vec<&str> = rel.split('/').collect();
    let (dirs, file) = segs.split_at(segs.len().checked_sub(1)?);
    let file = file.first().copied()?;
    match kind {
        FsKind::NextApp => {
            let start =
                after_anchor(dirs, &["app"], true).or_else(|| (dirs.last() == Some(&"app")).then_some(dirs.len()))?;
            let mut out = Vec::new();
            for seg in &dirs[start.min(dirs.len())..] {
                if seg.starts_with('(') && seg.ends_with(')') || seg.starts_with('@') {
                    continue;
                }
                if seg.starts_with('_') {
                    return None;
                }
                out.push(bracket_segment(seg));
            }
            Some(join(out))
        }
        FsKind::NextPages | FsKind::Astro => {
            let start = after_anchor(&segs, &["pages"], true)?;
            let mut out: Vec<String> = dirs[start.min(dirs.len())..].iter().map(|s| bracket_segment(s)).collect();
            let stem = strip_ext(file);
            if stem != "index" {
                out.push(bracket_segment(stem));
            }
            Some(join(out))
        }
        FsKind::SvelteKit => {
            let start = after_anchor(dirs, &["src", "routes"], false)
                .or_else(|| (dirs.ends_with(&["src", "routes"])).then_some(dirs.len()))?;
            let out = dirs[start.min(dirs.len())..]
                .iter()
                .filter(|s| !(s.starts_with('(') && s.ends_with(')')))
                .map(|s| bracket_segment(s));
            Some(join(out))
        }
        FsKind::Nuxt => {
            let (start, base) = if let Some(i) = after_anchor(&segs, &["server", "api"], false) {
                (i, "api")
            } else {
                (after_anchor(&segs, &["server", "routes"], false)?, "")
            };
            let mut out: Vec<String> = vec![base.to_owned()];
            out.extend(dirs[start.min(dirs.len())..].iter().map(|s| bracket_segment(s)));
            let mut stem = strip_ext(file);
            if let Some((s, m)) = stem.rsplit_once('.')
                && matches!(m, "post" | "get" | "put" | "patch" | "delete" | "head" | "options")
            {
                stem = s;
            }
            if stem != "index" {
                out.push(bracket_segment(stem));
            }
            Some(join(out))
        }
        FsKind::Remix => {
            let start = after_anchor(&segs, &["app", "routes"], false)?;
            let mut names: Vec<&str> = segs[start.min(segs.len())..].to_vec();
            // Folder routes: `app/routes/api.webhooks.clerk/route.ts`.
            if let Some(last) = names.last() {
                if strip_ext(last) == "route" && names.len() > 1 {
                    names.pop();
                } else if let Some(l) = names.last_mut() {
                    *l = strip_ext(l);
                }
            }
            let mut out = Vec::new();
            for name in names {
                for token in flat_tokens(name) {
                    if let Some(seg) = remix_segment(&token) {
                        out.push(seg);
                    }
                }
            }
            Some(join(out))
        }
    }
}

/// Splits a flat-route name on `.` outside `[...]` escapes, unescaping them.
fn flat_tokens(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in name.chars() {
        match c {
            '[' => escaped = true,
            ']' => escaped = false,
            '.' if !escaped => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn remix_segment(token: &str) -> Option<String> {
    if token.is_empty() || token == "_index" || token == "index" || token == "route" {
        return None;
    }
    if token.starts_with('_') {
        return None; // pathless layout
    }
    let t = token.strip_suffix('_').unwrap_or(token);
    let t = t.strip_prefix('(').and_then(|s| s.strip_suffix(')')).unwrap_or(t);
    if t == "$" {
        return Some("*".to_owned());
    }
    if let Some(param) = t.strip_prefix('$') {
        return Some(format!(":{param}"));
    }
    Some(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_app_router() {
        assert_eq!(
            fs_route(FsKind::NextApp, "app/api/webhooks/clerk/route.ts").as_deref(),
            Some("/api/webhooks/clerk")
        );
        assert_eq!(
            fs_route(FsKind::NextApp, "src/app/(backend)/api/webhooks/route.ts").as_deref(),
            Some("/api/webhooks")
        );
        assert_eq!(fs_route(FsKind::NextApp, "app/api/[tenant]/hook/route.js").as_deref(), Some("/api/:tenant/hook"));
        assert_eq!(fs_route(FsKind::NextApp, "app/_lib/route.ts"), None);
    }

    #[test]
    fn pages_astro_nuxt_sveltekit() {
        assert_eq!(fs_route(FsKind::NextPages, "pages/api/webhooks/clerk.ts").as_deref(), Some("/api/webhooks/clerk"));
        assert_eq!(fs_route(FsKind::NextPages, "src/pages/api/webhooks/index.js").as_deref(), Some("/api/webhooks"));
        assert_eq!(fs_route(FsKind::Astro, "src/pages/api/webhooks/clerk.ts").as_deref(), Some("/api/webhooks/clerk"));
        assert_eq!(fs_route(FsKind::Nuxt, "server/api/webhooks/clerk.post.ts").as_deref(), Some("/api/webhooks/clerk"));
        assert_eq!(fs_route(FsKind::Nuxt, "server/routes/hooks/index.ts").as_deref(), Some("/hooks"));
        assert_eq!(
            fs_route(FsKind::SvelteKit, "src/routes/(api)/api/webhooks/clerk/+server.ts").as_deref(),
            Some("/api/webhooks/clerk")
        );
        assert_eq!(fs_route(FsKind::SvelteKit, "src/routes/+server.ts").as_deref(), Some("/"));
    }

    #[test]
    fn remix_flat_routes() {
        assert_eq!(fs_route(FsKind::Remix, "app/routes/api.webhooks.clerk.ts").as_deref(), Some("/api/webhooks/clerk"));
        assert_eq!(
            fs_route(FsKind::Remix, "app/routes/api.webhooks.clerk/route.tsx").as_deref(),
            Some("/api/webhooks/clerk")
        );
        assert_eq!(fs_route(FsKind::Remix, "app/routes/_auth.hooks_.$id.ts").as_deref(), Some("/hooks/:id"));
        assert_eq!(fs_route(FsKind::Remix, "app/routes/api/webhooks/clerk.ts").as_deref(), Some("/api/webhooks/clerk"));
        assert_eq!(fs_route(FsKind::Remix, "app/routes/feed[.]xml.ts").as_deref(), Some("/feed.xml"));
    }
}
