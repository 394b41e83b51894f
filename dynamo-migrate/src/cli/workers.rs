//! `workers`: how to start an environment's workers on a job engine, and the AWS Batch array
//! job that `migrate --workers batch` submits.

use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use serde_json::json;

use super::session::EnvArgs;
use super::{Failure, Output, usage};
use crate::environment::{Environment, Environments, WorkersConfig};

/// How long a worker started by a job engine waits for its run to take the lock (the engine may
/// start it first), and for a pass to open while the run applies schema steps.
const WAIT_FOR_RUN_SECS: u64 = 600;

/// Workers when the environment does not say how many.
const DEFAULT_COUNT: u32 = 4;

/// Print how to start an environment's workers on a job engine.
///
/// `--emit command` prints the command one worker runs; `--emit kubernetes` a Kubernetes Indexed
/// Job (as JSON, which kubectl takes as YAML) whose pods run it in the image the environment's
/// `[<env>.workers] image` names; `--emit batch-json` the input of `aws batch submit-job
/// --cli-input-json`: an array job of `count` workers on the environment's `job_queue` and
/// `job_definition`. Start the workers, then run `cargo xtask migrate --env <env> --workers
/// external`, which opens its passes to them and waits (workers wait up to 10 minutes for it).
///
/// Example: `cargo xtask workers --env prod --emit kubernetes > workers.json`
#[derive(Debug, Args)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub(super) env: EnvArgs,
    /// What to print.
    #[arg(long, value_enum)]
    emit: Emit,
}

/// What `workers` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Emit {
    Command,
    Kubernetes,
    BatchJson,
}

impl WorkersArgs {
    pub async fn run(self, out: &Output) -> Result<(), Failure> {
        let environments = Environments::load(&self.env.environments).map_err(usage)?;
        let env = environments.get(&self.env.env).map_err(usage)?;
        let config = env.workers.clone().unwrap_or_default();
        let count = config.count.unwrap_or(DEFAULT_COUNT);
        let command = worker_command(&self.env);
        let emitted = match self.emit {
            Emit::Command => json!(format!("cargo xtask {}", command.join(" "))),
            Emit::Kubernetes => {
                let image = config
                    .image
                    .clone()
                    .ok_or_else(|| missing(env, &self.env, "image", "\"<your registry>/<your runner image>:<tag>\""))?;
                kubernetes(env, &image, count, &command)
            }
            Emit::BatchJson => {
                let (queue, definition) = batch_places(env, &config, &self.env)?;
                batch_input(env, &queue, &definition, count, &command)
            }
        };
        out.facts(json!({ "environment": env.name, "emit": emitted }));
        if out.is_human() {
            match &emitted {
                serde_json::Value::String(line) => println!("{line}"),
                document => println!("{}", serde_json::to_string_pretty(document).expect("JSON prints")),
            }
        }
        Ok(())
    }
}

/// The arguments of a worker of `env` (after the runner's name).
pub(super) fn worker_command(env: &EnvArgs) -> Vec<String> {
    let mut command = vec!["worker".to_owned(), "--env".to_owned(), env.env.clone()];
    if env.environments != std::path::Path::new(crate::environment::DEFAULT_FILE) {
        command.extend(["--environments".to_owned(), env.environments.display().to_string()]);
    }
    command.extend(["--wait-for-run".to_owned(), WAIT_FOR_RUN_SECS.to_string()]);
    command
}

fn missing(env: &Environment, args: &EnvArgs, key: &str, example: &str) -> Failure {
    usage(anyhow!(
        "environment {} names no workers {key}: add `{key} = {example}` under [{}.workers] in {}, then run `cargo xtask workers {} --emit …` again",
        env.name,
        env.name,
        args.environments.display(),
        args.options()
    ))
}

/// The AWS Batch job queue and job definition the environment names.
fn batch_places(env: &Environment, config: &WorkersConfig, args: &EnvArgs) -> Result<(String, String), Failure> {
    let queue = config.job_queue.clone().ok_or_else(|| missing(env, args, "job_queue", "\"<your job queue>\""))?;
    let definition = config
        .job_definition
        .clone()
        .ok_or_else(|| missing(env, args, "job_definition", "\"<a job definition whose image is your runner>\""))?;
    Ok((queue, definition))
}

/// A Kubernetes Indexed Job of `count` pods, each running one worker of `env` in `image`.
fn kubernetes(env: &Environment, image: &str, count: u32, command: &[String]) -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": format!("dynamo-migrate-workers-{}", env.name.replace('_', "-")) },
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": count,
            "backoffLimit": count,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "worker",
                        "image": image,
                        "args": command,
                        "env": [{ "name": "AWS_REGION", "value": env.region }],
                    }],
                },
            },
        },
    })
}

/// The input of `SubmitJob` for an array job of `count` workers.
fn batch_input(env: &Environment, queue: &str, definition: &str, count: u32, command: &[String]) -> serde_json::Value {
    json!({
        "jobName": format!("dynamo-migrate-workers-{}", env.name),
        "jobQueue": queue,
        "jobDefinition": definition,
        "arrayProperties": { "size": count },
        "containerOverrides": { "command": command },
    })
}

/// An AWS Batch array job of workers that a run submitted.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct BatchJob {
    pub id: String,
    pub name: String,
    pub size: u32,
    /// Its children by status, as Batch last said.
    pub statuses: std::collections::BTreeMap<String, i32>,
}

/// Submits the environment's array job of workers (`migrate --workers batch`).
pub(super) async fn submit_batch(
    env: &Environment,
    args: &EnvArgs,
) -> Result<(aws_sdk_batch::Client, BatchJob), Failure> {
    let config = env.workers.clone().unwrap_or_default();
    let (queue, definition) = batch_places(env, &config, args)?;
    let size = config.count.unwrap_or(DEFAULT_COUNT);
    if !(2..=10_000).contains(&size) {
        return Err(usage(anyhow!(
            "environment {}: workers count = {size}, and an AWS Batch array job has 2 to 10000 children: change it in {}",
            env.name,
            args.environments.display()
        )));
    }
    let client = crate::client::connect_batch(&env.target(), config.batch_endpoint.as_deref()).await;
    let name = format!("dynamo-migrate-workers-{}", env.name);
    let overrides = aws_sdk_batch::types::ContainerOverrides::builder().set_command(Some(worker_command(args))).build();
    let submitted = client
        .submit_job()
        .job_name(&name)
        .job_queue(&queue)
        .job_definition(&definition)
        .array_properties(aws_sdk_batch::types::ArrayProperties::builder().size(size as i32).build())
        .container_overrides(overrides)
        .send()
        .await
        .map_err(|e| {
            Failure::work(anyhow!(
                "AWS Batch refused the array job of workers on queue {queue} with definition {definition}: {}",
                crate::error::SdkFailure::of(&e)
            ))
        })?;
    let id = submitted.job_id().unwrap_or_default().to_owned();
    Ok((client, BatchJob { id, name, size, statuses: Default::default() }))
}

/// What Batch says of the job now.
pub(super) async fn describe_batch(client: &aws_sdk_batch::Client, job: &mut BatchJob) -> anyhow::Result<()> {
    let out = client
        .describe_jobs()
        .jobs(&job.id)
        .send()
        .await
        .map_err(|e| anyhow!("{}", crate::error::SdkFailure::of(&e)))?;
    if let Some(summary) = out.jobs().first().and_then(|j| j.array_properties()).and_then(|a| a.status_summary()) {
        job.statuses = summary.iter().filter(|(_, n)| **n > 0).map(|(k, v)| (k.clone(), *v)).collect();
    }
    Ok(())
}

/// Says on stderr, every `every`, how the array job's children stand when that changed.
pub(super) fn follow_batch(
    client: aws_sdk_batch::Client,
    mut job: BatchJob,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut said = String::new();
        loop {
            if describe_batch(&client, &mut job).await.is_ok() {
                let now = statuses(&job);
                if now != said {
                    eprintln!("AWS Batch job {} ({} workers): {now}", job.id, job.size);
                    said = now;
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// `2 RUNNING, 1 SUCCEEDED`.
pub(super) fn statuses(job: &BatchJob) -> String {
    let parts: Vec<String> = job.statuses.iter().map(|(status, n)| format!("{n} {status}")).collect();
    if parts.is_empty() { "no child reported yet".to_owned() } else { parts.join(", ") }
}
