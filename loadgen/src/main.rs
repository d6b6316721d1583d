//! loadgen: drives wsbroker with many WebSocket clients and measures what they receive.
//!
//! - [`plan`]: flags, scenario presets, and which connection does what.
//! - [`coordinator`]: spreads a run over worker processes, drives them, merges their results.
//! - [`worker`]: one process's connections on one thread; publishes and measures (and its `storm`:
//!   the `reconnect-storm` scenario, everyone dropping at once and coming back; its `resume`: with
//!   `--resume`, clients that come back with `since` and resend what had no ack, as the libraries
//!   do, for rolling restarts).
//! - [`wire`]: the probe each message carries; [`report`]: the summary, table and `.hgrm`.
//! - [`allocs`]: counts heap allocations, for the allocations per delivery in the report.
//! - [`reference`]: `loadgen reference-server`, the bare server the broker is measured against.

mod allocs;
mod coordinator;
mod plan;
mod reference;
mod report;
mod wire;
mod worker;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: allocs::Counting = allocs::Counting;

fn main() -> ExitCode {
    let args = plan::Args::parse();
    if let Some(plan::Command::ReferenceServer { listen }) = args.command {
        return match reference::main(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("loadgen reference-server: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(plan_json) = &args.worker_plan {
        let plan = serde_json::from_str(plan_json).expect("the coordinator passes a valid plan");
        worker::main(plan);
        return ExitCode::SUCCESS;
    }
    let plan = match plan::Plan::from_args(&args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("loadgen: {message}");
            return ExitCode::from(2);
        }
    };
    if args.plan {
        println!("{}", serde_json::to_string_pretty(&plan).expect("the plan is plain data"));
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(coordinator::run(args, plan))
}
