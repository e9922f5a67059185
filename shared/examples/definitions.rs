//! Prints the RabbitMQ definitions of the default topology (prefix `countersign`, default retry
//! delays): how `deploy/rabbitmq/definitions.json` is made.
//!
//! ```sh
//! cargo run -q -p countersign --example definitions > deploy/rabbitmq/definitions.json
//! ```

#![allow(clippy::print_stdout)] // printing the definitions is this program's purpose

use countersign::config::{Config, Role};
use countersign::topology::Topology;

fn main() {
    let config = Config::from_toml("", Role::Worker, &|_| None).expect("the defaults are valid");
    let definitions = Topology::from_config(&config.amqp).definitions();
    println!(
        "{}",
        serde_json::to_string_pretty(&definitions).expect("JSON")
    );
}
