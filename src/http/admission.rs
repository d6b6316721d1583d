//! Admission: caps on open WebSocket connections, for the instance and for each client address.
//!
//! Owns: the counts, in one task (no shared map): an upgrade asks it for a [`Ticket`] before
//! registering, and the ticket, dropped when the connection's session ends, tells it the connection
//! is gone. Must not: know what connections do.

use std::collections::HashMap;
use std::net::IpAddr;

use tokio::sync::{mpsc, oneshot};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` are open (answered 503).
    InstanceFull,
    /// `--max-conns-per-ip` are open from this address (answered 429).
    AddressFull,
}

enum Request {
    Admit { ip: IpAddr, reply: oneshot::Sender<Result<(), Refusal>> },
    Release(IpAddr),
}

/// Proof that a connection was admitted; dropping it releases the slot.
#[derive(Debug)]
pub struct Ticket {
    ip: IpAddr,
    requests: mpsc::UnboundedSender<Request>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Release(self.ip));
    }
}

/// The handle the HTTP side uses; `None` inside when no cap is set, so admitting costs nothing.
#[derive(Debug, Clone)]
pub struct Admission {
    requests: Option<mpsc::UnboundedSender<Request>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Admit { ip, .. } => write!(f, "Admit({ip})"),
            Self::Release(ip) => write!(f, "Release({ip})"),
        }
    }
}

impl Admission {
    /// Starts the counting task on the current runtime; 0 means no cap.
    pub fn start(max_connections: usize, max_per_address: usize) -> Self {
        if max_connections == 0 && max_per_address == 0 {
            return Self { requests: None };
        }
        let (requests, inbox) = mpsc::unbounded_channel();
        tokio::spawn(count(inbox, max_connections, max_per_address));
        Self { requests: Some(requests) }
    }

    /// A ticket for one more connection from `ip`; `Ok(None)` when nothing is capped.
    pub async fn admit(&self, ip: IpAddr) -> Result<Option<Ticket>, Refusal> {
        let Some(requests) = &self.requests else {
            return Ok(None);
        };
        let (reply, answer) = oneshot::channel();
        // If the counting task is gone the server is stopping; let the registration refuse it.
        if requests.send(Request::Admit { ip, reply }).is_err() {
            return Ok(None);
        }
        match answer.await {
            Ok(Ok(())) => Ok(Some(Ticket { ip, requests: requests.clone() })),
            Ok(Err(refusal)) => Err(refusal),
            Err(_) => Ok(None),
        }
    }
}

async fn count(
    mut inbox: mpsc::UnboundedReceiver<Request>,
    max_connections: usize,
    max_per_address: usize,
) {
    let mut total = 0usize;
    let mut per_address: HashMap<IpAddr, usize> = HashMap::new();
    while let Some(request) = inbox.recv().await {
        match request {
            Request::Admit { ip, reply } => {
                let from_address = per_address.get(&ip).copied().unwrap_or(0);
                let verdict = if max_connections > 0 && total >= max_connections {
                    Err(Refusal::InstanceFull)
                } else if max_per_address > 0 && from_address >= max_per_address {
                    Err(Refusal::AddressFull)
                } else {
                    total += 1;
                    per_address.insert(ip, from_address + 1);
                    Ok(())
                };
                if reply.send(verdict).is_err() && verdict.is_ok() {
                    // The upgrade was abandoned before it got its ticket: give the slot back.
                    release(&mut total, &mut per_address, ip);
                }
            }
            Request::Release(ip) => release(&mut total, &mut per_address, ip),
        }
    }
}

fn release(total: &mut usize, per_address: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    *total = total.saturating_sub(1);
    if let Some(count) = per_address.get_mut(&ip) {
        *count -= 1;
        if *count == 0 {
            per_address.remove(&ip);
        }
    }
}
