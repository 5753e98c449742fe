use clap::Parser;

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
