//! A tiny local SMTP server for tests: it listens on `127.0.0.1:0`, speaks enough ESMTP for a
//! client to deliver (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS, no auth) and records
//! each message's envelope and exact DATA (dot-stuffing undone). The end of DATA can be scripted
//! to answer a failure (`451` to defer, `550` to refuse).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::recorded::{Recorded, ScriptedFailure};

/// One delivery attempt the sink received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent (headers and body, CRLF line ends).
    pub data: String,
    /// Whether the sink accepted it (`false` for scripted failures).
    pub accepted: bool,
}

impl ReceivedMail {
    /// The first value of header `name` (any case), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    log: Arc<Recorded<ReceivedMail>>,
    _stop: Arc<DropGuard>,
}

impl SmtpSink {
    pub async fn start() -> std::io::Result<SmtpSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log: Arc<Recorded<ReceivedMail>> = Arc::new(Recorded::default());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let sessions = log.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(session(stream, sessions.clone()));
                        }
                    }
                }
            }
        });
        Ok(SmtpSink {
            addr,
            log,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// The value for `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.log.all()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        self.log.wait_for(n, timeout, "SmtpSink messages").await
    }

    /// Answers the end of the next `count` DATA commands with `reply` (for example
    /// `451 4.3.0 try again later` or `550 5.1.1 no such user`).
    pub fn fail_next(&self, count: usize, reply: &str) {
        self.log.fail_next(
            count,
            ScriptedFailure {
                status: reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(451),
                body: reply.to_owned(),
                retry_after: None,
            },
        );
    }
}

async fn session(stream: TcpStream, log: Arc<Recorded<ReceivedMail>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 parley-sink ESMTP ready\r\n").await?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-parley-sink\r\n250-8BITMIME\r\n250 SMTPUTF8".to_owned(),
            "HELO" => "250 parley-sink".to_owned(),
            "MAIL" => {
                mail_from = angle(&command);
                rcpt_to.clear();
                "250 2.1.0 OK".to_owned()
            }
            "RCPT" => {
                rcpt_to.push(angle(&command));
                "250 2.1.5 OK".to_owned()
            }
            "DATA" => {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let failure = log.next_failure();
                log.push(ReceivedMail {
                    mail_from: mail_from.clone(),
                    rcpt_to: rcpt_to.clone(),
                    data,
                    accepted: failure.is_none(),
                });
                match failure {
                    Some(f) => f.body,
                    None => "250 2.0.0 queued".to_owned(),
                }
            }
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                "250 OK".to_owned()
            }
            "NOOP" => "250 OK".to_owned(),
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not implemented".to_owned(),
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\r\n").await?;
    }
}

/// The address inside `<...>` of a MAIL or RCPT command.
fn angle(command: &str) -> String {
    match (command.find('<'), command.find('>')) {
        (Some(open), Some(close)) if open < close => command[open + 1..close].to_owned(),
        _ => String::new(),
    }
}
