//! What one chaos client saw of one room: the id of each message, with the epoch (stream) it came
//! in. A long soak sees millions, so the clients' own ids (`c{client}-{count}`) are kept as bits,
//! one bitmap per sender and epoch; any other id (the HTTP API's) by name.

use std::collections::HashMap;

#[derive(Default)]
pub(crate) struct Seen {
    /// The epochs met so far; an epoch is named by its index here.
    epochs: Vec<Option<String>>,
    /// Bit `count` of `(sender, epoch)`: `c{sender}-{count}` came in that epoch.
    bits: HashMap<(u32, u32), Vec<u64>>,
    /// Other ids, with the epochs they came in.
    others: HashMap<String, Vec<u32>>,
    distinct: usize,
}

/// `c{sender}-{count}`, the chaos clients' ids.
fn chaos_id(id: &str) -> Option<(u32, usize)> {
    let (sender, count) = id.strip_prefix('c')?.split_once('-')?;
    Some((sender.parse().ok()?, count.parse().ok()?))
}

impl Seen {
    fn epoch(&mut self, epoch: Option<&str>) -> u32 {
        let known = self.epochs.iter().position(|e| e.as_deref() == epoch);
        let at = known.unwrap_or_else(|| {
            self.epochs.push(epoch.map(str::to_owned));
            self.epochs.len() - 1
        });
        u32::try_from(at).expect("few epochs")
    }

    /// Records `id` as come in `epoch`; whether it had come in that same epoch already.
    pub(crate) fn insert(&mut self, id: &str, epoch: Option<&str>) -> bool {
        let (epoch, known) = (self.epoch(epoch), self.contains(id));
        self.distinct += usize::from(!known);
        let Some((sender, count)) = chaos_id(id) else {
            let epochs = self.others.entry(id.to_owned()).or_default();
            let again = epochs.contains(&epoch);
            epochs.push(epoch);
            return again;
        };
        let bits = self.bits.entry((sender, epoch)).or_default();
        let (word, bit) = (count / 64, 1u64 << (count % 64));
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let again = bits[word] & bit != 0;
        bits[word] |= bit;
        again
    }

    /// Whether `id` came, in any epoch.
    pub(crate) fn contains(&self, id: &str) -> bool {
        let Some((sender, count)) = chaos_id(id) else { return self.others.contains_key(id) };
        (0..self.epochs.len() as u32).any(|epoch| {
            self.bits
                .get(&(sender, epoch))
                .and_then(|bits| bits.get(count / 64))
                .is_some_and(|word| word & (1 << (count % 64)) != 0)
        })
    }

    /// How many distinct ids came.
    pub(crate) fn len(&self) -> usize {
        self.distinct
    }
}

#[test]
fn an_id_is_seen_once_per_epoch_and_counted_once() {
    let mut seen = Seen::default();
    assert!(!seen.insert("c3-70", Some("e1")));
    assert!(seen.insert("c3-70", Some("e1")), "twice in one stream");
    assert!(!seen.insert("c3-70", Some("e2")), "again in a new stream");
    assert!(!seen.insert("http-9", None));
    assert!(seen.insert("http-9", None));
    assert!(seen.contains("c3-70") && seen.contains("http-9"));
    assert!(!seen.contains("c3-71") && !seen.contains("c4-70") && !seen.contains("x"));
    assert_eq!(seen.len(), 2);
}
