use clap::Args;

use super::option;

/// The environment options every environment command shares.
#[derive(Debug, Args)]
pub struct EnvOptions {
    /// The environment, as named in environments.toml.
    #[arg(long)]
    env: String,
    /// The environments file.
    #[arg(long, default_value = "environments.toml")]
    environments: String,
    /// Output format: human or json.
    #[arg(long, default_value = "human")]
    format: String,
}

impl EnvOptions {
    /// The runner's arguments for `command` on this environment.
    pub fn args(&self, command: &str, with_format: bool) -> Vec<String> {
        let mut args = vec![command.to_owned()];
        option(&mut args, "--env", Some(&self.env));
        option(&mut args, "--environments", Some(&self.environments));
        if with_format {
            option(&mut args, "--format", Some(&self.format));
        }
        args
    }
}
