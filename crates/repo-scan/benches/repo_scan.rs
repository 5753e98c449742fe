//! Benchmark of the repo artifact extractor: generates a 20,000-file tree in a temp folder (a monorepo
//! of Next.js, Express, FastAPI and Go apps with components, routes, env files, docs, fixtures and a
//! `node_modules` the walk must skip) and reports files/s, MB/s and CPU time.
//!
//! `cargo bench --bench repo_scan` (release profile). Options: `--files N` (default 20000),
//! `--runs N` (default 3), `--threads N` (default 0 = auto).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clerk_repo_scan::{ScanOptions, scan_with_stats};

const PK_TEST: &str = "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k";
const SK_TEST: &str = "sk_test_fixtureOnlyA1b2C3d4E5f6G7h8I9j0K1l2M3n4";

struct Args {
    files: usize,
    runs: usize,
    threads: usize,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it: then a
    // small smoke run proves the bench works without spending the test suite's time.
    let mut a = if argv.iter().any(|arg| arg == "--bench") {
        Args { files: 20_000, runs: 3, threads: 0 }
    } else {
        Args { files: 300, runs: 1, threads: 0 }
    };
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match (argv[i].as_str(), value) {
            ("--files", Some(v)) => a.files = v,
            ("--runs", Some(v)) => a.runs = v.max(1),
            ("--threads", Some(v)) => a.threads = v,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`), if available.
fn cpu_time() -> Option<Duration> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks; USER_HZ is 100 on every mainstream configuration.
    Some(Duration::from_millis((utime + stime) * 10))
}

fn write(root: &Path, rel: &str, contents: &str) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        let _ = fs::create_dir_all(parent);
    }
    let _ = fs::write(p, contents);
}

fn component(i: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "import {{ useState, useEffect }} from 'react'");
    let _ = writeln!(s, "import {{ useUser }} from '@clerk/nextjs'");
    let _ = writeln!(s, "import styles from './Component{i}.module.css'\n");
    let _ = writeln!(s, "export function Component{i}({{ items }}: {{ items: string[] }}) {{");
    let _ = writeln!(s, "  const {{ user }} = useUser()\n  const [open, setOpen] = useState(false)");
    for j in 0..(20 + i % 40) {
        let _ = writeln!(s, "  const value{j} = items.map((x) => `${{x}}-{j}`).filter(Boolean) // item {j}");
    }
    let _ = writeln!(s, "  useEffect(() => {{ setOpen(true) }}, [])");
    let _ = writeln!(
        s,
        "  return <div className={{styles.root}}>{{user?.firstName}} {{open ? 'open' : 'closed'}}</div>\n}}"
    );
    s
}

fn route(i: usize) -> String {
    if (i / 10).is_multiple_of(5) {
        format!(
            "import {{ verifyWebhook }} from '@clerk/nextjs/webhooks'\n\nexport async function POST(req: Request) {{\n  const evt = await verifyWebhook(req)\n  if (evt.type === 'user.created') {{ console.log({i}) }}\n  return new Response('ok')\n}}\n"
        )
    } else {
        format!(
            "import {{ auth }} from '@clerk/nextjs/server'\n\nexport async function GET() {{\n  const {{ userId }} = await auth()\n  return Response.json({{ userId, n: {i} }})\n}}\n"
        )
    }
}

fn python(i: usize) -> String {
    let mut s =
        String::from("import os\nfrom fastapi import APIRouter, Request\n\nrouter = APIRouter(prefix=\"/v1\")\n\n");
    for j in 0..(5 + i % 10) {
        let _ = writeln!(
            s,
            "@router.get(\"/items/{j}\")\nasync def item_{j}(request: Request):\n    return {{\"id\": {j}, \"n\": {i}}}\n"
        );
    }
    s
}

fn go(i: usize) -> String {
    let mut s = format!("package svc{}\n\nimport (\n\t\"net/http\"\n)\n\n", i % 20);
    for j in 0..(5 + i % 10) {
        let _ = writeln!(
            s,
            "func Handler{i}x{j}(w http.ResponseWriter, r *http.Request) {{\n\tw.WriteHeader(http.StatusOK)\n}}\n"
        );
    }
    s
}

fn markdown(i: usize) -> String {
    let mut s = format!("# Page {i}\n\n");
    for j in 0..30 {
        let _ = writeln!(
            s,
            "Paragraph {j}: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor."
        );
    }
    s
}

/// Generates `n` files (plus a skipped `node_modules`) under `root`.
fn generate(root: &Path, n: usize) {
    let apps = (n / 2000).max(1);
    for a in 0..apps {
        write(
            root,
            &format!("apps/app{a}/package.json"),
            r#"{"dependencies":{"@clerk/nextjs":"6","next":"15","express":"4"}}"#,
        );
        write(
            root,
            &format!("apps/app{a}/.env.production"),
            &format!("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY={PK_TEST}\nCLERK_SECRET_KEY={SK_TEST}\n"),
        );
        for k in 0..200 {
            write(
                root,
                &format!("apps/app{a}/node_modules/pkg{k}/index.js"),
                "module.exports = function () { return 1 }\n",
            );
        }
    }
    let mut made = apps * 2;
    let mut i = 0;
    while made < n {
        let app = i % apps;
        let (rel, body) = match i % 10 {
            0..=3 => (format!("apps/app{app}/src/components/c{}/Component{i}.tsx", i % 97), component(i)),
            4 => (format!("apps/app{app}/src/app/api/r{i}/route.ts"), route(i)),
            5 => (
                format!("apps/app{app}/src/styles/s{i}.css"),
                format!(".root{i} {{ display: flex; gap: {}px }}\n", i % 16),
            ),
            6 => (format!("services/py{}/app/routes_{i}.py", i % 13), python(i)),
            7 => (format!("services/go{}/handlers_{i}.go", i % 11), go(i)),
            8 => (format!("docs/section{}/page{i}.md", i % 17), markdown(i)),
            _ => (
                format!("apps/app{app}/src/data/d{i}.json"),
                format!("{{\"id\": {i}, \"tags\": [\"a\", \"b\"], \"nested\": {{\"x\": {i}}}}}\n"),
            ),
        };
        write(root, &rel, &body);
        made += 1;
        i += 1;
    }
}

fn main() {
    let args = args();
    let root: PathBuf = std::env::temp_dir().join(format!("clerk-audit-repo-scan-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let t = Instant::now();
    generate(&root, args.files);
    println!("generated {} files in {:.2?} under {}", args.files, t.elapsed(), root.display());

    let options = ScanOptions { threads: args.threads, ..ScanOptions::default() };
    let mut best = Duration::MAX;
    for run in 1..=args.runs {
        let cpu0 = cpu_time();
        let t = Instant::now();
        let (artifact, stats) = match scan_with_stats(&root, &options) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("scan failed: {e}");
                std::process::exit(1);
            }
        };
        let wall = t.elapsed();
        let cpu = match (cpu0, cpu_time()) {
            (Some(a), Some(b)) => format!("{:.2?}", b.saturating_sub(a)),
            _ => "n/a".into(),
        };
        best = best.min(wall);
        println!(
            "run {run}: {} files scanned ({} seen, {} skipped) {:.1} MB in {:.2?} wall, {cpu} CPU: {:.0} files/s, {:.1} MB/s; {} key refs, {} handlers",
            stats.files_scanned,
            stats.files_seen,
            stats.skipped_binary + stats.skipped_too_large + stats.skipped_unreadable,
            stats.bytes_read as f64 / 1e6,
            wall,
            stats.files_scanned as f64 / wall.as_secs_f64(),
            stats.bytes_read as f64 / 1e6 / wall.as_secs_f64(),
            artifact.key_references.len(),
            artifact.webhook_handlers.len(),
        );
    }
    println!("best: {:.0} files/s", args.files as f64 / best.as_secs_f64());

    // A medium repo (3,000 files), one thread: CPU cost of a typical scan.
    let medium = root.with_extension("medium");
    let _ = fs::remove_dir_all(&medium);
    generate(&medium, 3000);
    let single = ScanOptions { threads: 1, ..ScanOptions::default() };
    let cpu0 = cpu_time();
    let t = Instant::now();
    if let Ok((_, stats)) = scan_with_stats(&medium, &single) {
        let cpu = match (cpu0, cpu_time()) {
            (Some(a), Some(b)) => format!("{:.2?}", b.saturating_sub(a)),
            _ => "n/a".into(),
        };
        println!("medium repo: {} files, 1 thread: {:.2?} wall, {cpu} CPU", stats.files_scanned, t.elapsed());
    }
    let _ = fs::remove_dir_all(&medium);
    let _ = fs::remove_dir_all(&root);
}
