//! `countersign-worker` — not built yet (issue 3): it will consume `<prefix>.persist` and record
//! every delivery in PostgreSQL. Until then it says so and fails, rather than pretending to work.

fn main() -> std::process::ExitCode {
    eprintln!("countersign-worker: not implemented yet (see issue 3)");
    std::process::ExitCode::from(2)
}
