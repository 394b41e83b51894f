//! The example application's command line, for trying it against DynamoDB Local:
//!
//! ```sh
//! cargo xtask local --apply &      # DynamoDB Local on 127.0.0.1:8000, migrations applied, prefix dev_
//! export SHOP_TABLE_PREFIX=dev_ AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8000 AWS_REGION=us-east-1
//! export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
//! cargo run -p app -- put 7 Ada ada@example.com N1 && cargo run -p app -- postcode N1
//! ```

use std::process::ExitCode;

use schema::customers::{Customer, PROFILE};

#[tokio::main]
async fn main() -> ExitCode {
    // The SDK's log lines, as RUST_LOG asks (warnings by default).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> anyhow::Result<()> {
    let shop = app::Shop::from_env().await?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["put", nr, name, email, postcode @ ..] => {
            let customer = Customer {
                customer_nr: nr.parse()?,
                record: PROFILE.to_owned(),
                name: (*name).to_owned(),
                email: (*email).to_owned(),
                email_normalised: Customer::normalise_email(email),
                postcode: postcode.first().map(|p| (*p).to_owned()),
                expires_at: None,
            };
            shop.put_customer(&customer).await?;
            println!("wrote customer {} into {}", customer.customer_nr, shop.customers_table());
        }
        ["get", nr] => println!("{}", serde_json::to_string(&shop.customer(nr.parse()?).await?)?),
        ["postcode", postcode] => println!("{}", serde_json::to_string(&shop.customers_in_postcode(postcode).await?)?),
        _ => anyhow::bail!(
            "usage: app put <customer_nr> <name> <email> [postcode] | app get <customer_nr> | app postcode <postcode>"
        ),
    }
    Ok(())
}
