//! The byte stream tungstenite parses one frame from and writes its answers to.
//!
//! Owns: [`Wire`], the `Read + Write` that tungstenite sees. Must not: interpret bytes; tungstenite
//! does.

use std::io::{self, Read, Write};

use crate::lane::Lane;

/// What tungstenite reads one frame from (its bytes, then `WouldBlock`) and writes its answers
/// to (a pong, the echo of a close): the connection's lane, behind what is queued.
pub struct Wire<'a> {
    pub input: &'a [u8],
    pub lane: &'a Lane,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.input.len().min(buf.len());
        buf[..taken].copy_from_slice(&self.input[..taken]);
        self.input = &self.input[taken..];
        Ok(taken)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lane.write_own(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
