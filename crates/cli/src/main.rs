//! `salad-sd`: the operator, its cluster-less twin (`apply`/`diff`/`delete -f`), the image
//! builder, the CRD generator and the SaladCloud simulator, in one binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "salad-sd",
    version,
    about = "Stable Diffusion on SaladCloud, declaratively"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the StableDiffusionDeployment CRD as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", salad_sd_api::crd_yaml());
            ExitCode::SUCCESS
        }
    }
}
