//! A lane's queue of encoded frames, in order: the first one inline, the rest in a deque that is
//! freed as soon as it is drained.
//!
//! Owns: nothing but the frames. Why not a plain `VecDeque`: nearly every connection gets frames one
//! batch at a time and the kernel takes them at once, so the queue is empty between batches; a
//! deque would keep its first allocation (128 bytes) for the life of every connection, and free and
//! allocate it again on every batch if it were shrunk.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Default)]
pub(super) struct Frames {
    /// `None` only when the queue is empty (`rest` is empty then too).
    first: Option<Bytes>,
    /// Boxed: nearly always absent, and inline its 32 bytes would put every connection's lane in the
    /// next allocation class (`reader::tests` pins the lane's size).
    #[expect(clippy::box_collection, reason = "8 bytes inline instead of 32 in every lane")]
    rest: Option<Box<VecDeque<Bytes>>>,
}

impl Frames {
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.as_ref().map_or(0, |rest| rest.len())
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub fn push_back(&mut self, frame: Bytes) {
        if self.first.is_none() {
            self.first = Some(frame);
        } else {
            self.rest.get_or_insert_default().push_back(frame);
        }
    }

    pub fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.first.as_mut()
    }

    pub fn pop_front(&mut self) {
        self.first = self.rest.as_mut().and_then(|rest| rest.pop_front());
        if self.rest.as_ref().is_some_and(|rest| rest.is_empty()) {
            self.rest = None;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.first.iter().chain(self.rest.iter().flat_map(|rest| rest.iter()))
    }

    /// Keeps the first frame (when `keep_first`) and drops the rest.
    pub fn truncate(&mut self, keep_first: bool) {
        self.rest = None;
        if !keep_first {
            self.first = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_and_a_drained_queue_holds_no_allocation() {
        let mut frames = Frames::default();
        for i in 0..5u8 {
            frames.push_back(Bytes::from(vec![i]));
        }
        assert_eq!(frames.len(), 5);
        let order: Vec<u8> = frames.iter().map(|f| f[0]).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        for expected in 0..5u8 {
            assert_eq!(frames.front_mut().map(|f| f[0]), Some(expected));
            frames.pop_front();
        }
        assert!(frames.is_empty());
        assert!(frames.rest.is_none(), "the deque was freed once drained");
        frames.push_back(Bytes::from_static(b"a"));
        assert!(frames.rest.is_none(), "one frame lives inline");
        frames.push_back(Bytes::from_static(b"b"));
        frames.truncate(true);
        assert_eq!((frames.len(), frames.front_mut().map(|f| f[0])), (1, Some(b'a')));
        frames.truncate(false);
        assert!(frames.is_empty());
    }
}
