//! `completions`: the shell completion script of `cargo xtask`.
//!
//! clap_complete writes completions for a program of one word; `cargo xtask` is two, the second
//! an argument of cargo. So the script is written for a program named `cargo-xtask`, and then
//! tied to cargo's own completion, in each shell's way: bash completes `cargo` through a function
//! that hands `cargo xtask …` to the xtask's and everything else to cargo's completion, if one is
//! installed; zsh's cargo completion calls `_cargo-xtask` for `cargo xtask` itself; fish's
//! completions are declared on `cargo`, when its second word is `xtask`.

use clap::{Args, ValueEnum};
use clap_complete::Shell as Generator;

use super::{Failure, Output};

/// Print the shell completion script of `cargo xtask`
///
/// bash: `cargo xtask completions bash > ~/.local/share/bash-completion/completions/cargo`
/// (or source it from ~/.bashrc); cargo's own completion, if installed, keeps completing cargo's
/// other commands.
///
/// zsh: `cargo xtask completions zsh > ~/.zfunc/_cargo-xtask`, with ~/.zfunc in $fpath before
/// `compinit`; zsh's cargo completion calls it for `cargo xtask`.
///
/// fish: `cargo xtask completions fish > ~/.config/fish/completions/cargo-xtask.fish`, sourced
/// from ~/.config/fish/config.fish (fish loads completions by the command's name, which is cargo).
///
/// Example: `cargo xtask completions bash > ~/.local/share/bash-completion/completions/cargo`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// The shells whose completion scripts `completions` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The name the script is written for, before it is tied to `cargo xtask`: one without `-`
/// (clap_complete's bash script names a hyphenated program's subcommands in two ways), except in
/// zsh, whose cargo completion calls `_cargo-xtask`.
const PROGRAM: &str = "cargo_xtask";
const ZSH_PROGRAM: &str = "cargo-xtask";

impl CompletionsArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        let script = script(self.shell);
        if out.is_human() {
            print!("{script}");
        } else {
            out.facts(serde_json::json!({ "shell": format!("{:?}", self.shell).to_lowercase(), "script": script }));
        }
        Ok(())
    }
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let (generator, program) = match shell {
        Shell::Bash => (Generator::Bash, PROGRAM),
        Shell::Zsh => (Generator::Zsh, ZSH_PROGRAM),
        Shell::Fish => (Generator::Fish, PROGRAM),
    };
    // Every subcommand's name in the script derives from this one.
    let mut command = super::command().bin_name(program);
    let mut buffer = Vec::new();
    clap_complete::generate(generator, &mut command, program, &mut buffer);
    let generated = String::from_utf8(buffer).expect("clap_complete writes UTF-8");
    match shell {
        Shell::Bash => bash(&generated),
        Shell::Zsh => generated,
        Shell::Fish => fish(&generated),
    }
}

/// The generated functions, without the line that registers them for `cargo-xtask`, and a
/// `cargo` completion that hands `cargo xtask …` to them.
fn bash(generated: &str) -> String {
    let functions = generated.split("\nif [[ \"${BASH_VERSINFO[0]}\"").next().unwrap_or(generated);
    format!(
        r#"{functions}
# `cargo xtask …` is completed by the function above, with the words after `cargo` as its own;
# any other cargo command by cargo's completion, when one is installed.
if [[ -z ${{_cargo_xtask_previous+set}} ]]; then
    declare -F _completion_loader >/dev/null && _completion_loader cargo 2>/dev/null
    _cargo_xtask_previous=$(complete -p cargo 2>/dev/null | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
    [[ $_cargo_xtask_previous == _cargo_xtask_dispatch ]] && _cargo_xtask_previous=
fi
_cargo_xtask_dispatch() {{
    if [[ ${{COMP_WORDS[1]}} == xtask && $COMP_CWORD -ge 2 ]]; then
        local COMP_WORDS=({PROGRAM} "${{COMP_WORDS[@]:2}}")
        local COMP_CWORD=$((COMP_CWORD - 1))
        _{PROGRAM} {PROGRAM} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD - 1]}}"
    elif [[ -n $_cargo_xtask_previous ]]; then
        "$_cargo_xtask_previous" "$@"
    fi
}}
complete -F _cargo_xtask_dispatch -o bashdefault -o default cargo
"#
    )
}

/// The generated completions, declared on `cargo` when its second word is `xtask`.
fn fish(generated: &str) -> String {
    let only_xtask = "# `cargo xtask …` only: the xtask's words start after both.
    if test \"$cmd[2]\" != xtask
        return 1
    end
    set -e cmd[1..2]";
    let script = generated.replace(&format!("complete -c {PROGRAM} "), "complete -c cargo ").replacen(
        "set -e cmd[1]",
        only_xtask,
        1,
    );
    format!("# Completions of `cargo xtask …`, declared on cargo.\n{script}")
}
