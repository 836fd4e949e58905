//! `skat-bench`: Skat's load and benchmark tool. It starts the servers it measures (floor, one
//! Skat node, or Skat nodes sharing its own Redis) or targets given URLs, drives them from
//! worker processes of its own (`skat-bench worker`, re-executed from this binary), and reports
//! latency, losses, evictions, server CPU per delivery, connection storms and idle memory.
//! `skat-bench --help` lists the commands; `just bench` runs the standard suite.

// A command-line tool: its results go to stdout.
#![allow(clippy::print_stdout)]

// Top down: the commands (cli, commands, suite) compose the measurements (scenarios,
// capacity) and report them (report); those run against a deployment (deploy) with a fleet of
// clients (clients), measuring with the instruments of `measure`, which know nothing above them.
mod capacity;
mod cli;
mod clients;
mod commands;
mod deploy;
mod measure;
mod report;
mod scenarios;
mod suite;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use crate::cli::{Cli, Command};

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Worker) {
        return clients::worker::main().map(|()| ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let work = async move {
            match cli.command {
                Command::Suite(args) => Box::pin(suite::run(args)).await,
                Command::Load(args) => Box::pin(commands::load(args)).await,
                Command::Storm(args) => commands::storm(args).await,
                Command::Idle(args) => commands::idle(args).await,
                Command::Simnodes(args) => Box::pin(commands::simnodes(args)).await,
                Command::Units(args) => Box::pin(commands::units(args)).await,
                Command::Capacity(args) => commands::capacity(&args),
                Command::Worker => Ok(()),
            }
        };
        // On Ctrl-C or SIGTERM the work is dropped, and with it every process it started.
        tokio::select! {
            result = work => result.map(|()| ExitCode::SUCCESS),
            signal = interrupted() => {
                signal?;
                eprintln!("skat-bench: interrupted; the servers and workers it started are stopped");
                Ok(ExitCode::from(130))
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}
