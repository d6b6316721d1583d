//! The reader over real loopback sockets.
