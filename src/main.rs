use clap::Parser;

/// jemalloc instead of the system allocator: a scan allocates and frees many small buffers (HTTP bodies,
/// JSON values, rows) across the runtime's threads, and glibc's malloc spent about a tenth of the worker's
/// CPU on them in the benchmark (`scripts/bench.sh`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts: a background thread returns freed pages to the system after a
/// second (instead of on the allocating threads, or never), so memory stays flat under a deep queue.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1\0";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = clerk_audit::cli::Cli::parse();
    match clerk_audit::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("clerk-audit: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
