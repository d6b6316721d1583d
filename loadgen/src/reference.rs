//! `loadgen reference-server`: the physical limit to compare the broker with, in the same run.
//!
//! One thread on epoll (mio) that speaks just enough of the wire contract for loadgen's scenarios:
//! the upgrade (tungstenite's handshake), the room in the URL (`room=`), the client's pings (answered
//! by tungstenite) and a chat fanned out to its room. Per publish it builds one frame (the client's
//! text, as is: loadgen's probe parses it the same) and writes that same buffer into every member's
//! socket with a non-blocking write; only what a partial write leaves is queued, per connection. It
//! uses no JSON library and allocates nothing per delivery.
//!
//! Owns: its listener, its connections and the room lists. Must not: be mistaken for a broker (no
//! auth, acks, presence, storage or eviction).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response, ServerHandshake};
use tokio_tungstenite::tungstenite::handshake::{HandshakeError, MidHandshake};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, WebSocket};

const LISTENER: Token = Token(usize::MAX);

/// A connection's socket as tungstenite sees it: reads come from the socket; writes go straight in
/// while nothing is queued, and whatever the kernel does not take is queued in order. A write never
/// blocks, so tungstenite's own frames (pongs, the handshake reply) and the broadcast frames keep
/// one order.
struct Wire {
    tcp: TcpStream,
    queued: Vec<u8>,
}

impl Wire {
    /// Writes what the kernel takes now and queues the rest; `Err` only when the socket is broken.
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.queued.is_empty() {
            self.queued.extend_from_slice(bytes);
            return Ok(());
        }
        let mut written = 0;
        while written < bytes.len() {
            match self.tcp.write(&bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.queued.extend_from_slice(&bytes[written..]);
        Ok(())
    }

    /// Writes from the queue once the socket is writable again.
    fn drain(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.queued.len() {
            match self.tcp.write(&self.queued[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.queued.drain(..written);
        if self.queued.is_empty() {
            self.queued = Vec::new();
        }
        Ok(())
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.put(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The room named in an upgrade request's query (`room=`), if any.
fn room_of(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    let value = query.split('&').find_map(|pair| pair.strip_prefix("room="))?;
    Some(value.to_owned())
}

type Handshaking = MidHandshake<ServerHandshake<Wire, RoomCallback>>;

/// Notes the request's room while tungstenite answers the upgrade.
struct RoomCallback(std::rc::Rc<std::cell::RefCell<Option<String>>>);

impl tokio_tungstenite::tungstenite::handshake::server::Callback for RoomCallback {
    fn on_request(
        self,
        request: &Request,
        response: Response,
    ) -> Result<Response, tokio_tungstenite::tungstenite::handshake::server::ErrorResponse> {
        *self.0.borrow_mut() = room_of(request);
        Ok(response)
    }
}

enum Conn {
    Handshaking(Box<Handshaking>, std::rc::Rc<std::cell::RefCell<Option<String>>>),
    Open { ws: Box<WebSocket<Wire>>, room: Option<String> },
}

struct Server {
    poll: Poll,
    conns: HashMap<Token, Conn>,
    rooms: HashMap<String, Vec<Token>>,
    next_token: usize,
    /// The frame being fanned out, reused for every publish.
    frame: Vec<u8>,
}

/// Serves on `listen` until killed.
pub fn main(listen: SocketAddr) -> io::Result<()> {
    let mut listener = TcpListener::bind(listen)?;
    let poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("reference server listening on {}", listener.local_addr()?);
    let mut server =
        Server { poll, conns: HashMap::new(), rooms: HashMap::new(), next_token: 0, frame: vec![] };
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = server.poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                server.accept_all(&listener);
                continue;
            }
            let token = event.token();
            if event.is_writable() {
                server.on_writable(token);
            }
            if event.is_readable() || event.is_read_closed() {
                server.on_readable(token);
            }
        }
    }
}

impl Server {
    fn accept_all(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self.poll.registry().register(&mut tcp, token, interest).is_err() {
                        continue;
                    }
                    let room = std::rc::Rc::default();
                    let wire = Wire { tcp, queued: Vec::new() };
                    let callback = RoomCallback(std::rc::Rc::clone(&room));
                    let config =
                        WebSocketConfig::default().read_buffer_size(256).write_buffer_size(0);
                    let handshake = ServerHandshake::start(wire, callback, Some(config));
                    self.conns.insert(token, Conn::Handshaking(Box::new(handshake), room));
                    self.advance_handshake(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    /// Moves a handshake on with what has arrived; once done the connection joins its room.
    fn advance_handshake(&mut self, token: Token) {
        let Some(Conn::Handshaking(mid, room)) = self.conns.remove(&token) else { return };
        match mid.handshake() {
            Ok(ws) => {
                let room = room.borrow_mut().take();
                if let Some(room) = &room {
                    self.rooms.entry(room.clone()).or_default().push(token);
                }
                self.conns.insert(token, Conn::Open { ws: Box::new(ws), room });
                self.read_all(token);
            }
            Err(HandshakeError::Interrupted(mid)) => {
                self.conns.insert(token, Conn::Handshaking(Box::new(mid), room));
            }
            Err(HandshakeError::Failure(_)) => {}
        }
    }

    fn on_readable(&mut self, token: Token) {
        match self.conns.get(&token) {
            Some(Conn::Handshaking(..)) => self.advance_handshake(token),
            Some(Conn::Open { .. }) => self.read_all(token),
            None => {}
        }
    }

    fn on_writable(&mut self, token: Token) {
        let broken = match self.conns.get_mut(&token) {
            Some(Conn::Open { ws, .. }) => ws.get_mut().drain().is_err(),
            _ => false,
        };
        if broken {
            self.close(token);
        }
    }

    /// Reads every message that has arrived (mio is edge-triggered); a chat is fanned out.
    fn read_all(&mut self, token: Token) {
        loop {
            let Some(Conn::Open { ws, room }) = self.conns.get_mut(&token) else { return };
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let Some(room) = room.clone() else { continue };
                    let frame = Frame::message(text, OpCode::Data(Data::Text), true);
                    self.frame.clear();
                    frame.format(&mut self.frame).expect("a Vec takes any frame");
                    self.fan_out(&room);
                }
                Ok(_) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.close(token),
            }
        }
    }

    /// Writes the frame into every member of `room`: one buffer, a non-blocking write each.
    fn fan_out(&mut self, room: &str) {
        let Some(members) = self.rooms.get(room) else { return };
        let mut broken = Vec::new();
        for token in members {
            if let Some(Conn::Open { ws, .. }) = self.conns.get_mut(token) {
                if ws.get_mut().put(&self.frame).is_err() {
                    broken.push(*token);
                }
            }
        }
        broken.into_iter().for_each(|token| self.close(token));
    }

    fn close(&mut self, token: Token) {
        // A connection still in its handshake is dropped with its socket (which leaves epoll).
        let Some(Conn::Open { mut ws, room }) = self.conns.remove(&token) else { return };
        let _ = self.poll.registry().deregister(&mut ws.get_mut().tcp);
        if let Some(members) = room.and_then(|room| self.rooms.get_mut(&room)) {
            members.retain(|member| *member != token);
        }
    }
}
