//! The reader over real loopback sockets.

#[test]
fn sizes() {
    eprintln!(
        "lane {} conn {} connection {} heartbeat {} perms {} sockaddr {}",
        std::mem::size_of::<crate::lane::Lane>(),
        std::mem::size_of::<super::conn::Conn>(),
        std::mem::size_of::<crate::shard::cache::Connection>(),
        std::mem::size_of::<crate::session::heartbeat::Heartbeat>(),
        std::mem::size_of::<crate::auth::Permissions>(),
        std::mem::size_of::<std::net::SocketAddr>(),
    );
}
