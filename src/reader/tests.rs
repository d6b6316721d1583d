//! What an idle connection costs the shard's reader and its lane: each piece at the top of its
//! allocation class (mimalloc's: 128, 160, ...), so a field more is seen here before it costs every
//! connection 32 bytes (docs/benchmarks.md measures the whole connection).

#[test]
fn an_idle_connections_pieces_stay_within_their_allocation_classes() {
    let arc_header = 2 * std::mem::size_of::<usize>();
    let sizes = [
        ("the reader's connection", std::mem::size_of::<super::conn::Conn>(), 128),
        ("the lane (in its Arc)", std::mem::size_of::<crate::lane::Lane>() + arc_header, 128),
        ("the cache's entry", std::mem::size_of::<crate::shard::cache::Connection>(), 128),
    ];
    for (what, size, class) in sizes {
        assert!(size <= class, "{what} grew to {size} bytes, over the {class}-byte class");
    }
}
