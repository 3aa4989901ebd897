use anyhow::{bail, Result};

use super::Context;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

pub fn run(_cmd: Command, _ctx: &Context) -> Result<()> {
    bail!("`attempt-pkg model` is not implemented yet")
}
