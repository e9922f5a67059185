//! A provider API simulator: a small HTTP/1.1 server on loopback that answers each path with a
//! scripted sequence of responses (the last one repeats) and records what it was asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Further response headers.
    pub headers: Vec<(&'static str, String)>,
    /// How long the simulator waits before it answers (a slow API).
    pub delay: std::time::Duration,
    /// Sends half the body under the full `content-length`, then closes (a broken-off answer).
    pub truncated: bool,
}

impl Answer {
    pub fn ok(content_type: &'static str, body: &[u8]) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.to_vec(),
            headers: Vec::new(),
            delay: std::time::Duration::ZERO,
            truncated: false,
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: br#"{"error":"simulated"}"#.to_vec(),
            headers: Vec::new(),
            delay: std::time::Duration::ZERO,
            truncated: false,
        }
    }

    /// This answer, after `delay`.
    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    /// This answer with only the first half of its body sent.
    pub fn truncated(mut self) -> Self {
        self.truncated = true;
        self
    }

    /// A redirect to `location`.
    pub fn redirect(location: &str) -> Self {
        Self::status(302).with_header("location", location)
    }

    /// This answer with one more response header.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// A request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    /// Every request header, by lower-case name.
    pub headers: HashMap<String, String>,
    /// The request body (by its `content-length`).
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    script: HashMap<String, Vec<Answer>>,
    seen: Vec<Seen>,
}

pub struct Simulator {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// Serves `script` (path → answers in order) under `base_path` on a free loopback port.
    pub async fn start(base_path: &str, script: Vec<(&str, Vec<Answer>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            script: script
                .into_iter()
                .map(|(path, answers)| (format!("{base_path}{path}"), answers))
                .collect(),
            seen: Vec::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let mut body = request.split_off(end);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let mut request_line = text.lines().next().unwrap_or_default().split(' ');
                    let method = request_line.next().unwrap_or_default().to_owned();
                    let path = request_line.next().unwrap_or("/").to_owned();
                    let headers: HashMap<String, String> = text
                        .lines()
                        .skip(1)
                        .filter_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
                        })
                        .collect();
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    while body.len() < length {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => body.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let authorization = text.lines().find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("authorization")
                            .then(|| value.trim().to_owned())
                    });
                    // Scripts are by path, or by path and query where one is scripted so.
                    let route = path.split('?').next().unwrap_or_default().to_owned();
                    let answer = {
                        let mut state = state.lock().unwrap();
                        state.seen.push(Seen {
                            method,
                            path: path.clone(),
                            authorization,
                            headers,
                            body,
                        });
                        // A script for the path with its query wins over one for the route.
                        let key = if state.script.contains_key(&path) {
                            path.clone()
                        } else {
                            route
                        };
                        match state.script.get_mut(&key) {
                            Some(answers) if answers.len() > 1 => answers.remove(0),
                            Some(answers) => answers[0].clone(),
                            None => Answer::status(404),
                        }
                    };
                    let extra: String = answer
                        .headers
                        .iter()
                        .map(|(name, value)| format!("{name}: {value}\r\n"))
                        .collect();
                    let head = format!(
                        "HTTP/1.1 {} Simulated\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
                        answer.status,
                        answer.content_type,
                        answer.body.len()
                    );
                    tokio::time::sleep(answer.delay).await;
                    let sent = if answer.truncated {
                        &answer.body[..answer.body.len() / 2]
                    } else {
                        &answer.body[..]
                    };
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(sent).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            base_url: format!("http://127.0.0.1:{port}{base_path}"),
            state,
            task,
        }
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}
