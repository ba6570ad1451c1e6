//! `salad-sd`: the operator, its cluster-less twin (`apply`/`diff`/`delete -f`), the image
//! builder, the CRD generator and the SaladCloud simulator, in one binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod build;
mod creds;
mod drive;
mod exit;
mod jobs;
mod logging;
mod logs;
mod operator;
mod output;
mod resource;

#[derive(Parser)]
#[command(
    name = "salad-sd",
    version,
    about = "Stable Diffusion on SaladCloud, declaratively"
)]
struct Cli {
    /// Log format on stderr: text (coloured only on a terminal) or json (one object per line).
    /// The filter comes from RUST_LOG (or its alias SALAD_SD_LOG), default info.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "SALAD_SD_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the StableDiffusionDeployment CRD as YAML.
    Crd,
    /// Run the Kubernetes operator: watch StableDiffusionDeployments and reconcile them.
    Operator(operator::OperatorArgs),
    /// Build the image, then create or update the container group of the resource in FILE.
    #[command(after_long_help = drive::APPLY_HELP)]
    Apply(drive::ApplyArgs),
    /// Show what `apply` would change (image build, container group), changing nothing.
    #[command(after_long_help = drive::DIFF_HELP)]
    Diff(drive::DiffArgs),
    /// Delete the container groups of the resource in FILE (honours spec.deletionPolicy).
    #[command(after_long_help = drive::DELETE_HELP)]
    Delete(drive::DeleteArgs),
    /// Build and push the image of the resource in FILE; prints the image reference (by digest)
    /// as the last line of stdout.
    #[command(after_long_help = build::BUILD_HELP)]
    Build(build::BuildArgs),
    /// Print the container logs of a resource's container group (SaladCloud's log query), for
    /// a resource in the cluster (NAME) or in a file (--filename). As a kubectl plugin:
    /// `kubectl sdd logs NAME` (install the binary, or a link to it, as `kubectl-sdd`).
    Logs(logs::LogsArgs),
    /// Enqueue a job on the SaladCloud job queue of a resource in queue mode (a txt2img for
    /// --prompt, or a JSON file), wait for it, and write its images to files.
    Submit(jobs::SubmitArgs),
    /// List recent jobs of a resource's SaladCloud job queue.
    Jobs(jobs::JobsArgs),
    /// Run the SaladCloud simulator (for the demo and tests) until Ctrl-C.
    #[cfg(feature = "sim")]
    Sim(saladcloud_sim::cli::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Crd = cli.command {
        print!("{}", salad_sd_api::crd_yaml());
        return ExitCode::SUCCESS;
    }
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::EXIT_ERROR);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Crd => unreachable!("handled above"),
            Command::Operator(args) => operator::run(args).await,
            Command::Apply(args) => drive::apply(args).await,
            Command::Diff(args) => drive::diff(args).await,
            Command::Delete(args) => drive::delete(args).await,
            Command::Build(args) => build::run(args).await,
            Command::Logs(args) => logs::run(args).await,
            Command::Submit(args) => jobs::submit(args).await,
            Command::Jobs(args) => jobs::jobs(args).await,
            #[cfg(feature = "sim")]
            Command::Sim(args) => match saladcloud_sim::cli::run(args).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    exit::EXIT_ERROR
                }
            },
        }
    });
    // Work left in the background (an image build's blocking layer writer after the operator
    // stopped) must not hold the exit: the pod's grace period is short.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}
