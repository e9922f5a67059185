//! The three-node RabbitMQ cluster of `deploy/cluster/docker-compose.yml`, for the fault suite:
//! started as a user starts it (a compose project of its own, free ports, the local base image
//! unless `RABBITMQ_IMAGE` says otherwise), its nodes killed, stopped, restarted and cut off.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub struct Cluster {
    /// How many of the file's three nodes run: 3, or 1 (node 1 alone, the seed, forms a
    /// cluster of one: the same image and configuration as a single node).
    size: u8,
    /// For fewer than three nodes: a compose file of its own over the shipped one (in this
    /// directory), whose configuration shortens the first node's wait for its peers.
    overlay: Option<PathBuf>,
    program: Vec<String>,
    project: String,
    /// (AMQP, management) host ports of nodes 1, 2, 3.
    ports: [(u16, u16); 3],
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `docker compose` or `rabbitmqctl` call, its stdout; 180 s at most (`compose up` creates
/// and starts containers; a `rabbitmqctl` asked about a cut-off peer can otherwise wait forever).
fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = crate::procs::output_within(command, Duration::from_secs(180))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Cluster {
    /// Starts the three nodes together and waits until they form one cluster.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_nodes(3).await
    }

    /// Starts the first `size` nodes (1 or 3) and waits until they form one cluster.
    pub async fn start_nodes(size: u8) -> anyhow::Result<Self> {
        let port = super::faults::free_port;
        let project = format!(
            "cs-faults-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let overlay = (size < 3).then(|| std::env::temp_dir().join(&project));
        if let Some(dir) = &overlay {
            // Node 1 alone waits for the peers its list names, ~23 s an attempt, some minutes
            // by default, before it forms a cluster of one: two attempts here.
            std::fs::create_dir_all(dir)?;
            let mut conf = std::fs::read_to_string(root().join("deploy/cluster/rabbitmq.conf"))?;
            conf.push_str(
                "cluster_formation.discovery_retry_limit = 2
",
            );
            conf.push_str(
                "cluster_formation.discovery_retry_interval = 1000
",
            );
            std::fs::write(dir.join("rabbitmq.conf"), conf)?;
            std::fs::write(
                dir.join("overlay.yml"),
                format!(
                    "services:\n  rabbitmq-1:\n    volumes:\n      - {}:/etc/rabbitmq/conf.d/20-countersign.conf:ro\n",
                    dir.join("rabbitmq.conf").display()
                ),
            )?;
        }
        let cluster = Self {
            size,
            overlay,
            program: countersign_testkit::compose_program(),
            project,
            ports: [(port(), port()), (port(), port()), (port(), port())],
        };
        let services: Vec<String> = (1..=size).map(|n| format!("rabbitmq-{n}")).collect();
        let mut args = vec!["up", "-d"];
        args.extend(services.iter().map(String::as_str));
        output(&mut cluster.compose(&args))?;
        cluster.wait_whole(Duration::from_secs(240)).await?;
        Ok(cluster)
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program[0]);
        command
            .args(&self.program[1..])
            .args(["-f", "deploy/cluster/docker-compose.yml"]);
        if let Some(dir) = &self.overlay {
            command.arg("-f").arg(dir.join("overlay.yml"));
        }
        command
            .args(["-p", &self.project])
            .args(args)
            .current_dir(root());
        if std::env::var_os("RABBITMQ_IMAGE").is_none() {
            command.env("RABBITMQ_IMAGE", "countersign-local/rabbitmq:4");
        }
        for (i, (amqp, ui)) in self.ports.iter().enumerate() {
            command.env(
                format!("COUNTERSIGN_RABBITMQ_{}_PORT", i + 1),
                amqp.to_string(),
            );
            command.env(
                format!("COUNTERSIGN_RABBITMQ_{}_UI_PORT", i + 1),
                ui.to_string(),
            );
        }
        command
    }

    /// The three nodes in one `amqp.url`, as a client of the cluster names them.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports[..usize::from(self.size)]
            .iter()
            .map(|(amqp, _)| format!("127.0.0.1:{amqp}"))
            .collect();
        format!("amqp://countersign:countersign@{}/%2f", hosts.join(","))
    }

    fn container(&self, node: u8) -> anyhow::Result<String> {
        let id = output(&mut self.compose(&["ps", "-q", &format!("rabbitmq-{node}")]))?;
        let id = id.trim().to_owned();
        if id.is_empty() {
            bail!("no container for rabbitmq-{node}");
        }
        Ok(id)
    }

    /// The running nodes' container ids, node 1's first.
    pub fn containers(&self) -> anyhow::Result<Vec<String>> {
        (1..=self.size).map(|node| self.container(node)).collect()
    }

    /// `rabbitmqctl` on node `node`.
    pub fn rabbitmqctl(&self, node: u8, args: &[&str]) -> anyhow::Result<String> {
        let service = format!("rabbitmq-{node}");
        let mut all = vec!["exec", "-T", service.as_str(), "rabbitmqctl", "-q"];
        all.extend_from_slice(args);
        output(&mut self.compose(&all))
    }

    /// The first node that answers `rabbitmqctl`.
    fn ask(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut last = None;
        for node in 1..=self.size {
            match self.rabbitmqctl(node, args) {
                Ok(text) => return Ok(text),
                Err(error) => last = Some(error),
            }
        }
        Err(last.expect("three nodes asked"))
    }

    /// The node (1–3) that leads quorum queue `queue`.
    pub fn leader(&self, queue: &str) -> anyhow::Result<u8> {
        let text = self.ask(&["list_queues", "name", "leader", "--formatter", "json"])?;
        let queues: Vec<serde_json::Value> = serde_json::from_str(&text)?;
        let leader = queues
            .iter()
            .find(|q| q["name"] == queue)
            .and_then(|q| q["leader"].as_str())
            .with_context(|| format!("no leader for {queue}"))?;
        leader
            .strip_prefix("rabbit@rabbitmq-")
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("leader {leader}"))
    }

    /// The leader of `queue` as the nodes but `excluded` see it (the majority, when `excluded`
    /// is cut off): `rabbitmq-queues quorum_status` on each in turn asks the queue's Raft
    /// members themselves for their state, where a queue listing goes through the metadata
    /// store and the cut-off node's stale record (`list_queues --local` found nothing there).
    pub fn leader_seen_without(&self, excluded: u8, queue: &str) -> anyhow::Result<u8> {
        let mut last = None;
        for node in (1..=self.size).filter(|&n| n != excluded) {
            let service = format!("rabbitmq-{node}");
            let text = match output(&mut self.compose(&[
                "exec",
                "-T",
                &service,
                "rabbitmq-queues",
                "-q",
                "quorum_status",
                queue,
                "--formatter",
                "json",
            ])) {
                Ok(text) => text,
                Err(error) => {
                    last = Some(error);
                    continue;
                }
            };
            let members: Vec<serde_json::Value> = serde_json::from_str(&text)
                .with_context(|| format!("quorum_status on {service}: {text}"))?;
            let leader = members
                .iter()
                .filter(|m| m["Raft State"] == "leader")
                .filter_map(|m| m["Node Name"].as_str())
                .filter_map(|name| name.strip_prefix("rabbit@rabbitmq-")?.parse::<u8>().ok())
                .find(|&n| n != excluded);
            match leader {
                Some(leader) => return Ok(leader),
                None => {
                    last = Some(anyhow::anyhow!(
                        "rabbitmq-{node} sees no leader of {queue} but rabbitmq-{excluded}: {text}"
                    ))
                }
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no node but rabbitmq-{excluded} leads {queue}")))
    }

    /// Waits until every node runs and every quorum queue has a member online on each.
    pub async fn wait_whole(&self, within: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if self.is_whole() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                bail!(
                    "the cluster was not whole again within {within:?}: {}",
                    self.describe()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits until the cluster is whole; if it has not healed itself within `within`, restarts
    /// the nodes that are out of it (as an operator would: `docker restart`, one at a time) and
    /// waits `within` again. Returns how long it took until whole, and what was done to it.
    pub async fn heal_or_restart(
        &self,
        within: Duration,
    ) -> anyhow::Result<(Duration, Option<String>)> {
        let started = Instant::now();
        let Err(error) = self.wait_whole(within).await else {
            return Ok((started.elapsed(), None));
        };
        let suspects = self.out_of_cluster();
        if suspects.is_empty() {
            return Err(error);
        }
        for &node in &suspects {
            output(Command::new("docker").args(["restart", "-t", "60", &self.container(node)?]))?;
        }
        self.wait_whole(within).await?;
        let names: Vec<String> = suspects.iter().map(|n| format!("rabbitmq-{n}")).collect();
        Ok((
            started.elapsed(),
            Some(format!(
                "not whole {} s after the fault ({error:#}); {} restarted",
                within.as_secs(),
                names.join(", ")
            )),
        ))
    }

    /// The nodes that some other node does not count as running, or whose quorum queue members
    /// are not online.
    fn out_of_cluster(&self) -> Vec<u8> {
        let node_of = |name: &serde_json::Value| {
            name.as_str()
                .and_then(|n| n.strip_prefix("rabbit@rabbitmq-"))
                .and_then(|n| n.parse::<u8>().ok())
        };
        let mut out = std::collections::BTreeSet::new();
        for asked in 1..=self.size {
            let running: Option<Vec<u8>> = self
                .rabbitmqctl(asked, &["cluster_status", "--formatter", "json"])
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|s| {
                    Some(
                        s["running_nodes"]
                            .as_array()?
                            .iter()
                            .filter_map(node_of)
                            .collect(),
                    )
                });
            match running {
                Some(running) => out.extend((1..=self.size).filter(|n| !running.contains(n))),
                None => {
                    out.insert(asked);
                }
            }
        }
        if let Some(queues) = self.membership() {
            for queue in queues {
                let online: Vec<u8> = queue["online"]
                    .as_array()
                    .map(|o| o.iter().filter_map(node_of).collect())
                    .unwrap_or_default();
                out.extend((1..=self.size).filter(|n| !online.contains(n)));
            }
        }
        out.into_iter().collect()
    }

    /// What each node says of the cluster and of the queues that are not whole, for a failure's
    /// message: enough to tell a node that never rejoined from a Raft member that never came back.
    fn describe(&self) -> String {
        (1..=self.size)
            .map(|node| {
                let running = self
                    .rabbitmqctl(node, &["cluster_status", "--formatter", "json"])
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .map_or("no answer".to_owned(), |s| {
                        format!(
                            "running {}, partitions {}",
                            s["running_nodes"], s["partitions"]
                        )
                    });
                let queues = self
                    .rabbitmqctl(
                        node,
                        &[
                            "list_queues",
                            "--local",
                            "name",
                            "members",
                            "online",
                            "--formatter",
                            "json",
                        ],
                    )
                    .ok()
                    .and_then(|text| serde_json::from_str::<Vec<serde_json::Value>>(&text).ok())
                    .map_or("no answer".to_owned(), |queues| {
                        let partial: Vec<String> = queues
                            .iter()
                            .filter(|q| {
                                q["members"].as_array().map(Vec::len)
                                    != Some(usize::from(self.size))
                                    || q["online"].as_array().map(Vec::len)
                                        != Some(usize::from(self.size))
                            })
                            .map(|q| {
                                format!(
                                    "{} members {} online {}",
                                    q["name"], q["members"], q["online"]
                                )
                            })
                            .collect();
                        format!(
                            "{} local queues, not whole: [{}]",
                            queues.len(),
                            partial.join("; ")
                        )
                    });
                format!("rabbitmq-{node}: {running}; {queues}")
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Every queue's name, members and members online, as the first node that answers lists
    /// them.
    fn membership(&self) -> Option<Vec<serde_json::Value>> {
        let text = self
            .ask(&[
                "list_queues",
                "name",
                "members",
                "online",
                "--formatter",
                "json",
            ])
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    fn is_whole(&self) -> bool {
        let running = self
            .ask(&["cluster_status", "--formatter", "json"])
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|s| s["running_nodes"].as_array().map(Vec::len));
        if running != Some(usize::from(self.size)) {
            return false;
        }
        self.membership().is_some_and(|queues| {
            queues.iter().all(|q| {
                q["members"].as_array().map(Vec::len) == Some(usize::from(self.size))
                    && q["online"].as_array().map(Vec::len) == Some(usize::from(self.size))
            })
        })
    }

    /// The nodes' logs into `path`, for a scenario that failed.
    pub fn save_logs(&self, path: &std::path::Path) {
        if let Ok(text) = output(&mut self.compose(&["logs", "--no-color", "--timestamps"])) {
            let _ = std::fs::write(path, text);
        }
    }

    /// `docker kill`: the node dies at once (SIGKILL), as on a lost machine.
    pub fn kill(&self, node: u8) -> anyhow::Result<()> {
        output(Command::new("docker").args(["kill", &self.container(node)?])).map(|_| ())
    }

    /// A graceful stop (SIGTERM; the node hands its leaderships over), as a rolling restart does.
    pub fn stop(&self, node: u8) -> anyhow::Result<()> {
        output(Command::new("docker").args(["stop", "-t", "60", &self.container(node)?]))
            .map(|_| ())
    }

    pub fn start_node(&self, node: u8) -> anyhow::Result<()> {
        output(Command::new("docker").args(["start", &self.container(node)?])).map(|_| ())
    }

    fn address(&self, node: u8) -> anyhow::Result<String> {
        let text = output(Command::new("docker").args([
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &self.container(node)?,
        ]))?;
        text.split_whitespace()
            .next()
            .map(str::to_owned)
            .with_context(|| format!("rabbitmq-{node} has no address"))
    }

    fn pid(&self, node: u8) -> anyhow::Result<String> {
        Ok(output(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.State.Pid}}",
            &self.container(node)?,
        ]))?
        .trim()
        .to_owned())
    }

    /// Cuts node `node` off from the other two (packets to and from them dropped, inside its
    /// network namespace); its clients still reach it.
    pub fn partition(&self, node: u8) -> anyhow::Result<()> {
        self.firewall(node, "-A")
    }

    pub fn heal(&self, node: u8) -> anyhow::Result<()> {
        self.firewall(node, "-D")
    }

    fn firewall(&self, node: u8, action: &str) -> anyhow::Result<()> {
        let pid = self.pid(node)?;
        for peer in (1..=3).filter(|&n| n != node) {
            let address = self.address(peer)?;
            for (chain, direction) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                output(Command::new("nsenter").args([
                    "-t", &pid, "-n", "iptables", action, chain, direction, &address, "-j", "DROP",
                ]))?;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        countersign_testkit::compose_down(self.compose(&[]));
        if let Some(dir) = &self.overlay {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
