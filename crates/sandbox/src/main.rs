//! `clerk-audit-sandbox`: the stand-ins for demos, benchmarks and child-process tests. Never shipped in the
//! product image.

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "clerk-audit-sandbox", version, about = "Clerk/Svix/DNS/KMS stand-ins for tests and demos")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Clerk/Svix/DNS sandbox on loopback; prints its instances as one JSON line.
    Serve {
        /// TCP port of the Backend API; 0 picks free ports for every listener.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// UDP port of the sandbox DNS server; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        dns_port: u16,
        /// Loopback address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
    /// KMS helpers against the KMS endpoint of the environment (`CLERK_AUDIT_KMS__ENDPOINT_URL`).
    Kms {
        #[command(subcommand)]
        command: KmsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KmsCommand {
    /// Create a symmetric key and print its id.
    CreateKey,
    /// Serve the fast KMS stand-in (real KMS JSON protocol, encryption context enforced) on loopback; prints
    /// `{"endpoint_url": ...}` as one JSON line.
    Serve {
        /// TCP port; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Loopback address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clerk-audit-sandbox: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { port, dns_port, host } => {
            clerk_audit_sandbox::run_cli(clerk_audit_sandbox::SandboxConfig { host, backend_port: port, dns_port })
                .await
        }
        Command::Kms { command: KmsCommand::Serve { port, host } } => {
            clerk_audit_sandbox::run_kms_cli(host, port).await
        }
        Command::Kms { command: KmsCommand::CreateKey } => {
            let client = kms_client().await;
            let output = client.create_key().description("clerk-audit credentials").send().await?;
            let id = output.key_metadata().map(|m| m.key_id().to_owned()).context("KMS returned no key id")?;
            println!("{id}");
            Ok(())
        }
    }
}

/// A KMS client for the stand-in named by the worker's own variables, so a demo configures both alike.
async fn kms_client() -> aws_sdk_kms::Client {
    let region = std::env::var("CLERK_AUDIT_KMS__REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(region));
    if let Ok(endpoint) = std::env::var("CLERK_AUDIT_KMS__ENDPOINT_URL")
        && !endpoint.is_empty()
    {
        loader = loader.endpoint_url(endpoint);
    }
    aws_sdk_kms::Client::new(&loader.load().await)
}
